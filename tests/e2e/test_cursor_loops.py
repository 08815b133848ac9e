"""Cursor loops (spec 6.1) through the command line: claimers draining a work queue in the stack's own
Postgres (through a stored credential), a queue whose pages enqueue the next page, and claims that fail.

Every playbook creates its own queue table, so the cases run at once on the session's stack."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from engine.protocol.events import claim_key
from tests.e2e.helpers import Batch, Case, Noetl, Outcome, completed, inline, of_type, store_pg_credential

ROWS = 500
LAST_PAGE = 12


def drain_case(credential: str) -> Case:
    table = f"work_{uuid.uuid4().hex[:8]}"
    return Case(inline("cursor_drain", f"""\
        workload: {{pg_auth: {credential}}}
        workflow:
          - step: setup
            tool: postgres
            auth: "{{{{ workload.pg_auth }}}}"
            command: |
              CREATE TABLE {table} (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'pending',
                                    claimed_at timestamptz, done integer NOT NULL DEFAULT 0);
              INSERT INTO {table} (id) SELECT g FROM generate_series(1, {ROWS}) g;
            next: work
          - step: work
            loop:
              cursor:
                kind: postgres
                auth: "{{{{ workload.pg_auth }}}}"
                claim: |
                  UPDATE {table} SET status = 'claimed', claimed_at = clock_timestamp()
                  WHERE id IN (SELECT id FROM {table} WHERE status = 'pending' ORDER BY id
                               FOR UPDATE SKIP LOCKED LIMIT {{{{ __frame_max_rows }}}})
                  RETURNING id, '{{{{ execution_id }}}}' AS run,
                            {{{{ __lease_seconds | default(99) }}}} AS lease
              iterator: job
              spec:
                mode: cursor
                max_in_flight: 4
                frame: {{max_rows: 1, lease_seconds: 120, heartbeat_seconds: 30}}
            tool:
              kind: postgres
              auth: "{{{{ workload.pg_auth }}}}"
              command: >-
                UPDATE {table} SET status = 'done', done = done + 1 WHERE id = {{{{ job.id }}}}
                RETURNING id, {{{{ iter._index }}}} AS claimer_index, '{{{{ job.run }}}}' AS run,
                {{{{ job.lease }}}} AS lease
            set: {{ctx.stats: "{{{{ work.stats }}}}"}}
            next: check
          - step: check
            tool:
              kind: postgres
              auth: "{{{{ workload.pg_auth }}}}"
              command: >-
                SELECT count(*) FILTER (WHERE status = 'done') AS done, min(done) AS least,
                       max(done) AS most, {{{{ work.results | length }}}} AS results,
                       {{{{ ctx.stats.claimed }}}} AS claimed
                FROM {table}
        """), events=True)


def pages_case(credential: str) -> Case:
    table = f"pages_{uuid.uuid4().hex[:8]}"
    return Case(inline("cursor_pages", f"""\
        workload: {{pg_auth: {credential}, last_page: {LAST_PAGE}}}
        workflow:
          - step: setup
            tool: postgres
            auth: "{{{{ workload.pg_auth }}}}"
            command: |
              CREATE TABLE {table} (id serial PRIMARY KEY, page integer UNIQUE NOT NULL,
                                    status text NOT NULL DEFAULT 'pending',
                                    processed integer NOT NULL DEFAULT 0);
              INSERT INTO {table} (page) VALUES (1);
            next: pages
          - step: pages
            loop:
              cursor:
                kind: postgres
                auth: "{{{{ workload.pg_auth }}}}"
                claim: |
                  UPDATE {table} SET status = 'claimed'
                  WHERE id IN (SELECT id FROM {table} WHERE status = 'pending' ORDER BY id
                               FOR UPDATE SKIP LOCKED LIMIT {{{{ __frame_max_rows }}}})
                  RETURNING id, page
              iterator: page_row
              spec: {{mode: cursor, max_in_flight: 2}}
            tool:
              - name: fetch
                kind: python
                input: {{page: "{{{{ page_row.page }}}}", last: "{{{{ workload.last_page }}}}"}}
                code: |
                  items = [page * 10 + i for i in range(3)]
                  result = {{'page': page, 'items': items, 'has_more': page < last}}
              - name: save
                kind: postgres
                auth: "{{{{ workload.pg_auth }}}}"
                commands:
                  - >-
                    UPDATE {table} SET status = 'done', processed = processed + 1
                    WHERE id = {{{{ page_row.id }}}}
                  - >-
                    INSERT INTO {table} (page) SELECT {{{{ fetch.page }}}} + 1
                    WHERE {{{{ fetch.has_more }}}} ON CONFLICT (page) DO NOTHING
                  - "SELECT {{{{ fetch.page }}}} AS page, {{{{ fetch.items | length }}}} AS items"
            next: check
          - step: check
            tool:
              kind: postgres
              auth: "{{{{ workload.pg_auth }}}}"
              command: "SELECT page, status, processed FROM {table} ORDER BY page"
        """), events=True)


def failing_claims_case(credential: str) -> Case:
    def step(name: str, cursor: str) -> str:
        return (f"  - step: {name}\n"
                "    spec: {policy: {failure: {mode: best_effort}}}\n"
                f"    loop: {{cursor: {cursor}, iterator: job, spec: {{mode: cursor, max_in_flight: 3}}}}\n"
                "    tool: {kind: noop, result: '{{ job }}'}\n")
    body = ("workflow:\n  - step: start\n    next: {spec: {mode: inclusive}, arcs: [{step: bad_sql}, "
            "{step: no_credential}, {step: unreachable}]}\n")
    body += step("bad_sql", f"{{kind: postgres, auth: {credential}, "
                            "claim: 'UPDATE no_such_queue_e2e SET x = 1 RETURNING id'}")
    body += step("no_credential", "{kind: postgres, auth: no_such_credential_e2e, claim: 'SELECT 1 AS id'}")
    body += step("unreachable", "{kind: postgres, connection_string: 'postgresql://nobody@127.0.0.1:1/none', "
                                "claim: 'SELECT 1 AS id'}")
    return Case(inline("cursor_failing_claims", body), events=True)


@pytest.fixture(scope="module")
def pg_credential(e2e_stack: Noetl) -> str:
    """A postgres credential for the stack's own database."""
    return store_pg_credential(e2e_stack, "e2e_cursor")


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, pg_credential: str) -> Iterator[Batch]:
    batch = e2e_stack.batch({"drain": drain_case(pg_credential), "pages": pages_case(pg_credential)})
    yield batch
    batch.close()


def rows_of(run: Outcome, step: str) -> list[dict[str, Any]]:
    return list(run.step(step)["result"]["rows"])


def test_four_claimers_drain_a_queue_of_500_rows_each_once_with_the_results_in_claim_order(
        runs: Batch) -> None:
    run = runs["drain"]
    completed(run)
    work = run.step("work")
    assert work["status"] == "succeeded"
    result = work["result"]
    assert result["stats"] == {"claimed": ROWS, "succeeded": ROWS, "failed": 0}
    assert rows_of(run, "check") == [{"done": ROWS, "least": 1, "most": 1, "results": ROWS, "claimed": ROWS}]
    ids = [item["rows"][0]["id"] for item in result["results"]]
    assert sorted(ids) == list(range(1, ROWS + 1))
    first = result["results"][0]["rows"][0]
    assert first["run"] == run.doc["execution_id"] and first["lease"] == 99  # other `__` names are missing
    items = of_type(run.log, "loop.item.succeeded", "work")
    assert len(items) == ROWS
    claimers = {item["payload"]["cursor"]["claimer"] for item in items}
    assert claimers <= {0, 1, 2, 3} and len(claimers) > 1  # the claimers shared the queue
    in_claim_order = sorted(items, key=lambda item: claim_key(item["payload"]["cursor"]))
    assert ids == [item["result"]["data"]["rows"][0]["id"] for item in in_claim_order]
    for claimer in claimers:  # one claimer's rows: claimed one after the other, so in the queue's order
        mine = [i for i in ids if i in {item["result"]["data"]["rows"][0]["id"] for item in in_claim_order
                                        if item["payload"]["cursor"]["claimer"] == claimer}]
        assert mine == sorted(mine)
    assert [e["payload"]["stats"] for e in of_type(run.log, "loop.completed", "work")] == [result["stats"]]
    [outcome] = of_type(run.log, "step.succeeded", "work")  # the large list is read back from the rows
    assert outcome["payload"]["items_in_events"] is True and outcome["payload"]["cursor"] is True
    stopped = of_type(run.log, "loop.claimer.stopped", "work")
    assert sorted(e["payload"]["cursor"]["claimer"] for e in stopped) == [0, 1, 2, 3]
    assert sum(e["payload"]["cursor"]["rows"] for e in stopped) == ROWS


def test_a_queue_whose_pages_enqueue_the_next_page_is_drained_with_every_page_processed_once(
        runs: Batch) -> None:
    run = runs["pages"]
    completed(run)
    assert rows_of(run, "check") == [{"page": p, "status": "done", "processed": 1}
                                     for p in range(1, LAST_PAGE + 1)]
    result = run.step("pages")["result"]
    assert result["stats"] == {"claimed": LAST_PAGE, "succeeded": LAST_PAGE, "failed": 0}
    # a page exists only once the one before it is processed: claim order is page order
    pages = [[{"page": p, "items": 3}] for p in range(1, LAST_PAGE + 1)]
    assert [r["rows"] for r in result["results"]] == pages
    stopped = of_type(run.log, "loop.claimer.stopped", "pages")
    assert len(stopped) == 2 and all(e["result"]["status"] == "ok" for e in stopped)


def test_a_claim_that_fails_fails_the_step_quickly_with_its_classified_kind(
        noetl: Noetl, pg_credential: str) -> None:
    began = time.monotonic()
    code, doc = noetl.run_json(failing_claims_case(pg_credential).playbook)
    assert time.monotonic() - began < 45  # never a hang: each claim's error ends its claimer
    assert (code, doc["status"]) == (0, "completed"), doc  # best_effort: each failed step ends its branch
    bad = doc["steps"]["bad_sql"]
    assert bad["status"] == "failed"
    assert (bad["error"]["kind"], bad["error"]["retryable"]) == ("sql_syntax", False)
    assert bad["error"]["message"].startswith("step 'bad_sql': the claim of claimer ")
    assert "no_such_queue_e2e" in bad["error"]["message"]
    assert bad["result"]["stats"] == {"claimed": 0, "succeeded": 0, "failed": 0}
    missing = doc["steps"]["no_credential"]["error"]
    assert missing["kind"] == "missing_credential" and "no_such_credential_e2e" in missing["message"]
    unreachable = doc["steps"]["unreachable"]["error"]
    assert unreachable["kind"] == "db_connection" and "step 'unreachable'" in unreachable["message"]
