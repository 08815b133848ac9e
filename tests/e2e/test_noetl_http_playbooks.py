"""NoETL-style HTTP playbooks (spec sections 3, 7, 9 and 16 as NoETL users write them) against a local
paginated API: page, offset and cursor pagination as task pipelines that jump back while there is more,
retries of a flaky endpoint, a 429 with Retry-After, and the ways NoETL playbooks read an http result
(`{{ fetch }}` as `.body`, `.data` or directly; `set: {fetch_result: "{{ output }}"}` then python)."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import Batch, Case, Noetl, Outcome, completed, inline, of_type
from tests.harness.paginated_api import TOTAL_ITEMS, PaginatedApi, paginated_api  # noqa: F401

VALIDATE = """\
  - step: validate_results
    desc: every item, in order, exactly once (NoETL's own check)
    tool:
      kind: python
      input:
        input_data:
          fetched: "{{ fetch_all }}"
      code: |
        def main(input_data):
            data = input_data.get('fetched', {}).get('items', [])
            ids = [item['id'] for item in data]
            assert ids == list(range(1, 36)), f"expected ids 1..35, got {ids}"
            return {'status': 'success', 'total_items': len(data), 'first_id': ids[0], 'last_id': ids[-1]}
    next: [{step: end}]
  - step: end
    desc: Workflow complete
"""


def page_number(key: str) -> str:
    """Page-number pagination; the page body is read through `set: {fetch_result: "{{ output }}"}`."""
    return inline(key, textwrap.dedent("""\
        workload:
          api_url: http://unset
        workflow:
          - step: start
            desc: Fetch all assessments page by page
            next: [{step: fetch_all}]
          - step: fetch_all
            tool:
              - name: fetch_page
                kind: http
                method: GET
                url: "{{ workload.api_url }}/api/v1/assessments"
                params: {page: "{{ iter.page | default(1) }}", pageSize: 10}
                set: {fetch_result: "{{ output }}"}
                spec:
                  policy:
                    rules:
                      - when: "{{ output.error.status in [429, 500, 502, 503, 504] }}"
                        then: {do: retry, attempts: 5, backoff: fixed, delay: 0.05}
                      - when: "{{ output.status == 'error' }}"
                        then: {do: fail}
                      - else:
                          then: {do: continue}
              - name: collect
                kind: python
                input: {so_far: "{{ iter.items | default([]) }}", fetch_result: "{{ fetch_result }}"}
                code: |
                  body = fetch_result.get('data')
                  assert fetch_result.get('status_code') == 200
                  result = {'items': so_far + body['data'], 'has_more': body['paging']['hasMore'],
                            'next_page': body['paging']['page'] + 1}
                spec:
                  policy:
                    rules:
                      - when: "{{ output.has_more }}"
                        then:
                          do: jump
                          to: fetch_page
                          set: {iter.items: "{{ output.items }}", iter.page: "{{ output.next_page }}"}
                      - else:
                          then: {do: break}
            next: [{step: validate_results}]
        """) + VALIDATE)


def offset_based(key: str) -> str:
    """Offset pagination; the page is read as `{{ fetch_page.data... }}` and `{{ fetch_page.has_more }}`."""
    return inline(key, textwrap.dedent("""\
        workload:
          api_url: http://unset
        workflow:
          - step: start
            next: [{step: fetch_all}]
          - step: fetch_all
            tool:
              - name: fetch_page
                kind: http
                url: "{{ workload.api_url }}/api/v1/users"
                params: {offset: "{{ iter.offset | default(0) }}", limit: 10}
              - name: collect
                kind: noop
                result:
                  items: "{{ (iter.items | default([])) + fetch_page.body.data }}"
                  has_more: "{{ fetch_page.has_more }}"
                  next_offset: "{{ fetch_page.data.offset + fetch_page.limit }}"
                spec:
                  policy:
                    rules:
                      - when: "{{ output.has_more }}"
                        then:
                          do: jump
                          to: fetch_page
                          set: {iter.items: "{{ output.items }}", iter.offset: "{{ output.next_offset }}"}
                      - else:
                          do: break
            next: [{step: validate_results}]
        """) + VALIDATE)


def cursor_based(key: str) -> str:
    """Cursor pagination: the opaque cursor of each page is passed to the next call until it is null."""
    return inline(key, textwrap.dedent("""\
        workload:
          api_url: http://unset
        workflow:
          - step: start
            next: [{step: fetch_all}]
          - step: fetch_all
            tool:
              - name: fetch_page
                kind: http
                url: "{{ workload.api_url }}/api/v1/events"
                params:
                  limit: 10
                  cursor: "{{ iter.cursor | default('') }}"
                spec:
                  policy:
                    rules:
                      - when: "{{ output.error.retryable }}"
                        then: {do: retry, attempts: 3, delay: 0.05}
                      - else:
                        then:
                          do: continue
                          set:
                            iter.items: "{{ (iter.items | default([])) + output.events }}"
                            iter.cursor: "{{ output.data.next_cursor }}"
              - name: more
                kind: noop
                result: {items: "{{ iter.items }}", pages: "{{ _attempt }}"}
                spec:
                  policy:
                    rules:
                      - when: "{{ iter.cursor is not none and iter.cursor != '' }}"
                        then: {do: jump, to: fetch_page}
                      - else:
                          then: {do: break}
            next: [{step: validate_results}]
        """) + VALIDATE)


def flaky(key: str, api_key: str, endpoint: str, when: str) -> str:
    """Page-number pagination against an endpoint that fails before it answers (a retry per page)."""
    return inline(key, textwrap.dedent(f"""\
        workload:
          api_url: http://unset
        workflow:
          - step: start
            next: [{{step: fetch_all}}]
          - step: fetch_all
            tool:
              - name: fetch_page
                kind: http
                url: "{{{{ workload.api_url }}}}/api/v1/{endpoint}/{api_key}"
                params: {{page: "{{{{ iter.page | default(1) }}}}", pageSize: 10, fail: 2}}
                spec:
                  policy:
                    rules:
                      - when: "{when}"
                        then: {{do: retry, attempts: 4, backoff: fixed, delay: 0.05}}
                      - when: "{{{{ output.status == 'error' }}}}"
                        then: {{do: fail}}
                      - else:
                          then:
                            do: continue
                            set:
                              iter.items: "{{{{ (iter.items | default([])) + output.data.body.data }}}}"
                              iter.page: "{{{{ output.paging.page + 1 }}}}"
                              iter.more: "{{{{ output.data.paging.hasMore }}}}"
              - name: more
                kind: noop
                result: {{items: "{{{{ iter.items }}}}"}}
                spec:
                  policy:
                    rules:
                      - when: "{{{{ iter.more }}}}"
                        then: {{do: jump, to: fetch_page}}
                      - else:
                          then: {{do: break}}
            next: [{{step: validate_results}}]
        """) + VALIDATE)


def step_reads(key: str) -> str:
    """An http step's result read as NoETL playbooks read it: directly, as `.data` and as `.body`."""
    return inline(key, """\
        workload:
          api_url: http://unset
        workflow:
          - step: fetch_page
            tool:
              kind: http
              url: "{{ workload.api_url }}/api/v1/assessments"
              params: {page: 4, pageSize: 10}
            next:
              - step: on_more
                when: "{{ fetch_page.paging.hasMore }}"
              - step: last_page
          - step: on_more
            tool: {kind: noop, result: wrong}
          - step: last_page
            tool:
              kind: python
              input:
                direct: "{{ fetch_page.paging.page }}"
                via_data: "{{ fetch_page.data.paging.page }}"
                via_body: "{{ fetch_page.body.paging.page }}"
                status: "{{ fetch_page.status_code }}"
                whole: "{{ fetch_page }}"
              code: |
                result = {'direct': direct, 'via_data': via_data, 'via_body': via_body, 'status': status,
                          'same_body': whole['data'] == whole['body'], 'count': len(whole['body']['data'])}
        """)


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {name: uuid.uuid4().hex[:10] for name in ("flaky", "limited")}


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, paginated_api: PaginatedApi, keys: dict[str, str]) -> Iterator[Batch]:  # noqa: F811
    payload = {"api_url": paginated_api.url}
    cases = {
        "page": Case(page_number("page_pagination"), payload),
        "offset": Case(offset_based("offset_pagination"), payload),
        "cursor": Case(cursor_based("cursor_pagination"), payload),
        "flaky": Case(flaky("flaky_pagination", keys["flaky"], "flaky",
                            "{{ output.error.kind == 'server_error' and output.error.retryable }}"), payload,
                      events=True),
        "limited": Case(flaky("limited_pagination", keys["limited"], "limited",
                              "{{ output.error.kind == 'rate_limit' and output.error.retry_after == 1 }}"),
                        payload, events=True),
        "reads": Case(step_reads("http_step_reads"), payload),
    }
    batch = e2e_stack.batch(cases)
    yield batch
    batch.close()


def collected_everything(run: Outcome) -> None:
    completed(run)
    assert run.step("validate_results")["result"] == {"status": "success", "total_items": TOTAL_ITEMS,
                                                      "first_id": 1, "last_id": TOTAL_ITEMS}


def test_page_number_pagination_collects_every_item_reading_the_page_through_a_task_set(runs: Batch) -> None:
    collected_everything(runs["page"])


def test_offset_pagination_collects_every_item_reading_the_result_as_body_data_and_directly(
        runs: Batch) -> None:
    collected_everything(runs["offset"])


def test_cursor_pagination_follows_the_opaque_cursor_until_it_is_null(runs: Batch) -> None:
    collected_everything(runs["cursor"])


def test_a_flaky_endpoint_is_retried_on_server_error_and_every_page_arrives(
        runs: Batch, paginated_api: PaginatedApi, keys: dict[str, str]) -> None:  # noqa: F811
    run = runs["flaky"]
    collected_everything(run)
    failures = of_type(run.log, "task.attempt.failed", "fetch_all")
    assert len(failures) == 8  # two 503s before each of the 4 pages
    error = failures[0]["result"]["error"]
    assert (error["kind"], error["http_status"], error["status"], error["code"], error["retryable"]) == (
        "server_error", 503, 503, "HTTP_503", True)
    assert paginated_api.calls(keys["flaky"]) == 12


def test_a_429_carries_retry_after_and_a_rate_limit_rule_retries_it(
        runs: Batch, paginated_api: PaginatedApi, keys: dict[str, str]) -> None:  # noqa: F811
    run = runs["limited"]
    collected_everything(run)
    failures = of_type(run.log, "task.attempt.failed", "fetch_all")
    assert len(failures) == 4  # one 429 per page
    error = failures[0]["result"]["error"]
    assert (error["kind"], error["http_status"], error["retry_after"], error["code"]) == (
        "rate_limit", 429, 1.0, "HTTP_429")
    assert paginated_api.calls(keys["limited"]) == 8


def test_an_http_steps_result_reads_the_same_directly_as_data_and_as_body(runs: Batch) -> None:
    run = runs["reads"]
    completed(run)
    assert not run.ran("on_more")
    assert run.step("last_page")["result"] == {"direct": 4, "via_data": 4, "via_body": 4, "status": 200,
                                               "same_body": True, "count": 5}
