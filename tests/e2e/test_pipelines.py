"""Spec section 7 (task pipelines and policy rules) and section 8 (workbook), each as a small playbook run
through the real stack with `noetl run --json`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.helpers import Batch, Case, Noetl, completed, failed, inline, of_type, timestamp

CASES = {
    "retry_backoff": Case(inline("retry_backoff", """\
        workflow:
          - step: call
            tool:
              - name: dial
                kind: python
                code: "raise ConnectionError('connection reset by peer')"
                spec:
                  policy:
                    rules:
                      - when: "{{ output.status == 'error' and output.error.retryable }}"
                        then: {do: retry, attempts: 3, delay: 0.2, backoff: exponential, jitter: false}
        """), events=True),
    "retry_linear_on_data": Case(inline("retry_linear_on_data", """\
        workflow:
          - step: call
            tool:
              kind: python
              input: {attempt: "{{ _attempt }}"}
              code: "result = attempt"
              spec:
                policy:
                  rules:
                    - when: "{{ output.data < 3 }}"
                      then: {do: retry, attempts: 5, delay: 0.1, backoff: linear}
        """), events=True),
    "jump": Case(inline("jump", """\
        workflow:
          - step: count
            tool:
              - name: bump
                kind: python
                input: {n: "{{ n | default(0) }}"}
                code: "result = int(n) + 1"
                set: {n: "{{ output.data }}"}
              - name: check
                kind: noop
                spec:
                  policy:
                    rules:
                      - when: "{{ n < 3 }}"
                        then: {do: jump, to: bump}
              - name: done
                kind: python
                input: {n: "{{ n }}"}
                code: "result = {'n': n}"
        """)),
    "break": Case(inline("break", """\
        workflow:
          - step: pipe
            tool:
              - name: first
                kind: python
                code: "result = {'x': 1}"
                spec: {policy: {rules: [{else: {then: {do: break}}}]}}
              - name: second
                kind: python
                code: "result = {'x': 2}"
            next: {arcs: [{step: after}]}
          - step: after
            tool: {kind: python, input: {r: "{{ pipe.results }}"}, code: "result = sorted(r)"}
        """)),
    "fail_rule": Case(inline("fail_rule", """\
        workflow:
          - step: pipe
            tool:
              - name: check
                kind: python
                code: "result = {'rows': 0}"
                spec:
                  policy:
                    rules:
                      - when: "{{ output.data.rows == 0 }}"
                        then: {do: fail}
              - name: never
                kind: noop
        """)),
    "task_results": Case(inline("task_results", """\
        workflow:
          - step: pipe
            tool:
              - name: first
                kind: python
                code: "result = {'x': 1}"
              - name: second
                kind: python
                input: {prev: "{{ _prev }}", by_name: "{{ first.x }}"}
                code: "result = {'prev': prev, 'by_name': by_name}"
            next: {arcs: [{step: after}]}
          - step: after
            tool:
              kind: python
              input: {first: "{{ pipe.results.first }}", second: "{{ pipe.results.second }}",
                      step: "{{ pipe }}"}
              code: "result = {'first': first, 'second': second, 'step': step}"
        """)),
    "max_iterations": Case(inline("max_iterations", """\
        workflow:
          - step: forever
            spec: {max_iterations: 5}
            tool:
              - name: a
                kind: noop
              - name: b
                kind: noop
                spec: {policy: {rules: [{when: "{{ true }}", then: {do: jump, to: a}}]}}
        """)),
    "task_set_ctx": Case(inline("task_set_ctx", """\
        workflow:
          - step: a
            tool:
              kind: python
              code: "result = {'token': 't-1'}"
              set: {ctx.token: "{{ output.data.token }}"}
            next: {arcs: [{step: b}]}
          - step: b
            tool: {kind: python, input: {t: "{{ ctx.token }}"}, code: "result = t"}
        """)),
    "task_set_local": Case(inline("task_set_local", """\
        workflow:
          - step: pipe
            tool:
              - name: first
                kind: python
                code: "result = 21"
                set: {half: "{{ output.data }}"}
              - name: second
                kind: python
                input: {h: "{{ half }}"}
                code: "result = h * 2"
        """)),
    "continue_set_iter": Case(inline("continue_set_iter", """\
        workflow:
          - step: pages
            loop: {in: [1, 2], iterator: page}
            tool:
              - name: fetch
                kind: python
                code: "result = {'more': page < 2}"
                spec:
                  policy:
                    rules:
                      - else: {then: {do: continue, set: {iter.more: "{{ output.data.more }}"}}}
              - name: record
                kind: python
                input: {more: "{{ iter.more }}", p: "{{ iter.page }}"}
                code: "result = {'page': p, 'more': more}"
        """)),
    # ------------------------------------------------------------------ section 8
    "workbook_in_loop": Case(inline("workbook_in_loop", """\
        workbook:
          - name: classify
            tool:
              - name: measure
                kind: python
                input: {t: null}
                code: "result = float(t)"
              - name: label
                kind: python
                input: {v: "{{ _prev }}"}
                code: "result = 'hot' if v >= 25 else 'cold'"
        workflow:
          - step: each
            loop: {in: [30, 10, 25], iterator: temp}
            tool: {kind: workbook, name: classify, input: {t: "{{ iter.temp }}"}}
        """)),
}


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl) -> Iterator[Batch]:
    batch = e2e_stack.batch(CASES)
    yield batch
    batch.close()


def test_retry_runs_the_task_up_to_attempts_with_growing_backoff_then_fails(runs: Batch) -> None:
    run = runs["retry_backoff"]
    failed(run)
    call = run.step("call")
    assert call["attempts"] == 3
    assert call["error"]["kind"] == "connection"
    assert call["error"]["retryable"] is True
    failures = of_type(run.log, "task.attempt.failed", "call")
    assert [e["attempt"] for e in failures] == [1, 2, 3]
    retries = of_type(run.log, "step.retrying", "call")
    assert [(e["attempt"], e["payload"]["delay_s"]) for e in retries] == [(2, 0.2), (3, 0.4)]
    gaps = [(timestamp(b) - timestamp(a)).total_seconds() for a, b in zip(failures, failures[1:],
                                                                          strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps


def test_a_retry_rule_can_hold_on_a_successful_output_and_sees_the_attempt(runs: Batch) -> None:
    run = runs["retry_linear_on_data"]
    completed(run)
    assert run.step("call")["result"] == 3
    assert run.step("call")["attempts"] == 3
    assert len(of_type(run.log, "step.retrying", "call")) == 2
    assert not of_type(run.log, "task.attempt.failed", "call")


def test_jump_goes_back_to_a_named_task_until_its_rule_stops_holding(runs: Batch) -> None:
    run = runs["jump"]
    completed(run)
    assert run.step("count")["result"] == {"n": 3}


def test_break_ends_the_pipeline_successfully_with_the_result_of_the_task_that_broke(runs: Batch) -> None:
    run = runs["break"]
    completed(run)
    assert run.step("pipe")["result"] == {"x": 1}
    assert run.step("after")["result"] == ["first"]


def test_a_fail_rule_fails_the_step_even_on_a_successful_output(runs: Batch) -> None:
    run = runs["fail_rule"]
    failed(run)
    pipe = run.step("pipe")
    assert pipe["status"] == "failed"
    assert "policy rule" in pipe["error"]["message"]
    assert run.doc["error"]["step"] == "pipe"


def test_tasks_see_prev_and_earlier_tasks_by_name_and_later_steps_see_step_results(runs: Batch) -> None:
    run = runs["task_results"]
    completed(run)
    assert run.step("pipe")["result"] == {"prev": {"x": 1}, "by_name": 1}
    assert run.step("after")["result"] == {"first": {"x": 1}, "second": {"prev": {"x": 1}, "by_name": 1},
                                           "step": {"prev": {"x": 1}, "by_name": 1}}


def test_a_jump_loop_past_max_iterations_fails_the_step_with_a_clear_error(runs: Batch) -> None:
    run = runs["max_iterations"]
    failed(run)
    error = run.step("forever")["error"]
    assert "max_iterations=5" in error["message"]
    assert run.doc["error"]["step"] == "forever"


def test_a_task_level_set_of_ctx_reaches_the_next_step(runs: Batch) -> None:
    run = runs["task_set_ctx"]
    completed(run)
    assert run.step("b")["result"] == "t-1"


def test_task_level_set_names_without_a_scope_are_pipeline_local(runs: Batch) -> None:
    run = runs["task_set_local"]
    completed(run)
    assert run.step("pipe")["result"] == 42


def test_a_continue_rule_can_set_iter_values_for_the_next_task(runs: Batch) -> None:
    run = runs["continue_set_iter"]
    completed(run)
    assert run.step("pages")["result"] == [{"page": 1, "more": True}, {"page": 2, "more": False}]


def test_a_workbook_pipeline_called_from_a_loop_gets_each_items_input(runs: Batch) -> None:
    run = runs["workbook_in_loop"]
    completed(run)
    assert run.step("each")["result"] == ["hot", "cold", "hot"]
