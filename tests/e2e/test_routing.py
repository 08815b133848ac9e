"""Spec section 4 (routing), 4.1 (joins) and 4.2 (termination and status), each as a small playbook run
through the real stack with `noetl run --json`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import Batch, Case, Noetl, completed, failed, inline, of_type, terminal_events

BOOM = 'tool: {kind: python, code: "raise ValueError(\'boom\')"}'

CASES = {
    "exclusive_first_match": Case(inline("exclusive_first_match", """\
        workflow:
          - step: start
            tool: {kind: noop, result: {v: 5}}
            next:
              spec: {mode: exclusive}
              arcs:
                - {step: first, when: "{{ start.v > 1 }}"}
                - {step: second, when: "{{ start.v > 2 }}"}
                - {step: third}
          - {step: first, tool: {kind: noop, result: first}}
          - {step: second, tool: {kind: noop, result: second}}
          - {step: third, tool: {kind: noop, result: third}}
        """)),
    "exclusive_default": Case(inline("exclusive_default", """\
        workflow:
          - step: start
            tool: {kind: noop}
            next: {arcs: [{step: a, when: "{{ true }}"}, {step: b}]}
          - {step: a, tool: {kind: noop}}
          - {step: b, tool: {kind: noop}}
        """)),
    "inclusive_fan_out": Case(inline("inclusive_fan_out", """\
        workflow:
          - step: start
            tool: {kind: noop, result: {v: 5}}
            next:
              spec: {mode: inclusive}
              arcs:
                - {step: a, when: "{{ start.v > 1 }}"}
                - {step: b, when: "{{ start.v > 10 }}"}
                - {step: c}
          - {step: a, tool: {kind: noop, result: a}}
          - {step: b, tool: {kind: noop, result: b}}
          - {step: c, tool: {kind: noop, result: c}}
        """)),
    "no_arc_matches_is_a_leaf": Case(inline("no_arc_matches_is_a_leaf", """\
        workflow:
          - step: start
            tool: {kind: noop}
            next: {arcs: [{step: never, when: "{{ false }}"}]}
          - {step: never, tool: {kind: noop}}
        """)),
    "no_next_is_error": Case(inline("no_next_is_error", """\
        executor: {spec: {no_next_is_error: true}}
        workflow:
          - step: start
            tool: {kind: noop}
            next: {arcs: [{step: never, when: "{{ false }}"}]}
          - {step: never, tool: {kind: noop}}
        """)),
    "failure_routed_to_handler": Case(inline("failure_routed_to_handler", f"""\
        workflow:
          - step: boom
            {BOOM}
            next:
              arcs:
                - step: handler
                  when: "{{{{ event.name == 'call.error' }}}}"
                  set: {{ctx.kind: "{{{{ event.error.kind }}}}", ctx.seen: "{{{{ event.name }}}}"}}
                - {{step: onward}}
          - step: handler
            tool: {{kind: python, input: {{k: "{{{{ ctx.kind }}}}", s: "{{{{ ctx.seen }}}}"}},
                   code: "result = {{'kind': k, 'seen': s}}"}}
          - {{step: onward, tool: {{kind: noop}}}}
        """)),
    "unconditional_not_taken_on_failure": Case(inline("unconditional_not_taken_on_failure", f"""\
        workflow:
          - step: boom
            {BOOM}
            next: {{arcs: [{{step: onward}}]}}
          - {{step: onward, tool: {{kind: noop}}}}
        """)),
    "failed_without_next": Case(inline("failed_without_next", f"""\
        workflow:
          - step: boom
            {BOOM}
        """), events=True),
    "unevaluable_when_on_failure": Case(inline("unevaluable_when_on_failure", f"""\
        workflow:
          - step: boom
            {BOOM}
            next:
              arcs:
                - {{step: big, when: "{{{{ boom.size > 10 }}}}"}}
                - {{step: handler, when: "{{{{ event.name == 'call.error' }}}}"}}
          - {{step: big, tool: {{kind: noop}}}}
          - {{step: handler, tool: {{kind: noop, result: handled}}}}
        """), events=True),
    "success_arc_not_taken_on_success_when_call_error": Case(inline("call_done_name", """\
        workflow:
          - step: fine
            tool: {kind: noop, result: 1}
            next:
              spec: {mode: inclusive}
              arcs:
                - {step: on_error, when: "{{ event.name == 'call.error' }}"}
                - {step: on_done, when: "{{ event.name == 'call.done' }}"}
          - {step: on_error, tool: {kind: noop}}
          - {step: on_done, tool: {kind: noop}}
        """)),
    "best_effort": Case(inline("best_effort", f"""\
        workflow:
          - step: start
            tool: {{kind: noop}}
            next: {{spec: {{mode: inclusive}}, arcs: [{{step: shaky}}, {{step: steady}}]}}
          - step: shaky
            spec: {{policy: {{failure: {{mode: best_effort}}}}}}
            {BOOM}
            next: {{arcs: [{{step: after_shaky}}]}}
          - {{step: after_shaky, tool: {{kind: noop}}}}
          - step: steady
            tool: {{kind: python, code: "result = 'steady'"}}
        """)),
    "join_after_inclusive_fan_out": Case(inline("join_after_inclusive_fan_out", """\
        workflow:
          - step: start
            tool: {kind: noop}
            next: {spec: {mode: inclusive}, arcs: [{step: slow}, {step: quick}, {step: middle}]}
          - step: slow
            tool: {kind: python, code: "import time; time.sleep(0.8); result = {'n': 1}"}
            next: {arcs: [{step: join}]}
          - step: quick
            tool: {kind: python, code: "result = {'n': 10}"}
            next: {arcs: [{step: join}]}
          - step: middle
            tool: {kind: python, code: "import time; time.sleep(0.4); result = {'n': 100}"}
            next: {arcs: [{step: join}]}
          - step: join
            tool:
              kind: python
              input: {parts: ["{{ slow }}", "{{ quick }}", "{{ middle }}"]}
              code: "result = {'total': sum(p['n'] for p in parts), 'seen': len(parts)}"
        """), events=True),
    "join_behind_exclusive_choice": Case(inline("join_behind_exclusive_choice", """\
        workload: {pick: y}
        workflow:
          - step: start
            tool: {kind: noop}
            next:
              arcs:
                - {step: x, when: "{{ workload.pick == 'x' }}"}
                - {step: y}
          - step: x
            tool: {kind: noop, result: {side: x}}
            next: {arcs: [{step: join}]}
          - step: y
            tool: {kind: python, code: "import time; time.sleep(0.2); result = {'side': 'y'}"}
            next: {arcs: [{step: join}]}
          - step: join
            tool:
              kind: python
              input: {side: "{{ x.side if x else y.side }}", x_ran: "{{ 'yes' if x else 'no' }}"}
              code: "result = {'side': side, 'x_ran': x_ran}"
        """), events=True),
    "join_when_a_branch_routes_elsewhere": Case(inline("join_when_a_branch_routes_elsewhere", """\
        workflow:
          - step: start
            tool: {kind: noop}
            next: {spec: {mode: inclusive}, arcs: [{step: a}, {step: b}]}
          - step: a
            tool: {kind: noop, result: a}
            next: {arcs: [{step: join}]}
          - step: b
            tool: {kind: python, code: "import time; time.sleep(0.5); result = 'b'"}
            next: {arcs: [{step: join, when: "{{ b == 'never' }}"}, {step: side}]}
          - {step: side, tool: {kind: noop, result: side}}
          - step: join
            tool: {kind: python, input: {a: "{{ a }}"}, code: "result = a"}
        """), events=True),
    "join_after_a_best_effort_failure": Case(inline("join_after_a_best_effort_failure", """\
        workflow:
          - step: start
            tool: {kind: noop}
            next: {spec: {mode: inclusive}, arcs: [{step: a}, {step: b}]}
          - step: a
            tool: {kind: noop, result: a}
            next: {arcs: [{step: join}]}
          - step: b
            spec: {policy: {failure: {mode: best_effort}}}
            tool: {kind: python, code: "import time; time.sleep(0.3); raise ValueError('b failed')"}
            next: {arcs: [{step: join}]}
          - step: join
            tool: {kind: python, input: {a: "{{ a }}", b: "{{ b }}"}, code: "result = [a, b]"}
        """), events=True),
    "join_after_an_unhandled_failure": Case(inline("join_after_an_unhandled_failure", f"""\
        workflow:
          - step: start
            tool: {{kind: noop}}
            next: {{spec: {{mode: inclusive}}, arcs: [{{step: a}}, {{step: b}}]}}
          - step: a
            tool: {{kind: noop, result: a}}
            next: {{arcs: [{{step: join}}]}}
          - step: b
            {BOOM}
            next: {{arcs: [{{step: join}}]}}
          - {{step: join, tool: {{kind: noop}}}}
        """)),
    "final_step": Case(inline("final_step", """\
        executor: {spec: {final_step: cleanup}}
        workflow:
          - step: start
            tool: {kind: noop}
            next: {spec: {mode: inclusive}, arcs: [{step: a}, {step: b}]}
          - {step: a, tool: {kind: python, code: "import time; time.sleep(0.3); result = 'a'"}}
          - {step: b, tool: {kind: noop, result: b}}
          - step: cleanup
            tool: {kind: python, input: {a: "{{ a }}", b: "{{ b }}"}, code: "result = a + b"}
        """), events=True),
    "entry_step": Case(inline("entry_step", """\
        executor: {spec: {entry_step: second}}
        workflow:
          - {step: first, tool: {kind: noop, result: first}}
          - {step: second, tool: {kind: noop, result: second}}
        """)),
}


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl) -> Iterator[Batch]:
    batch = e2e_stack.batch(CASES)
    yield batch
    batch.close()


# ---------------------------------------------------------------------- section 4: routing
def test_exclusive_routing_takes_only_the_first_arc_whose_when_holds(runs: Batch) -> None:
    run = runs["exclusive_first_match"]
    completed(run)
    assert run.step("first")["result"] == "first"
    assert not run.ran("second") and not run.ran("third")


def test_exclusive_is_the_default_mode(runs: Batch) -> None:
    run = runs["exclusive_default"]
    completed(run)
    assert run.ran("a") and not run.ran("b")


def test_inclusive_routing_fans_out_to_every_arc_whose_when_holds(runs: Batch) -> None:
    run = runs["inclusive_fan_out"]
    completed(run)
    assert run.step("a")["result"] == "a" and run.step("c")["result"] == "c"
    assert not run.ran("b")


def test_a_successful_step_whose_arcs_all_fail_to_match_ends_its_branch(runs: Batch) -> None:
    run = runs["no_arc_matches_is_a_leaf"]
    completed(run)
    assert not run.ran("never")


def test_no_next_is_error_fails_a_step_whose_arcs_all_fail_to_match(runs: Batch) -> None:
    run = runs["no_next_is_error"]
    failed(run)
    assert not run.ran("never")
    assert run.doc["error"]["step"] == "start"
    assert "no_next_is_error" in run.doc["error"]["message"]


def test_a_failure_routes_through_a_call_error_arc_and_its_set_sees_the_error(runs: Batch) -> None:
    run = runs["failure_routed_to_handler"]
    completed(run)
    assert run.step("boom")["status"] == "failed"
    assert run.step("boom")["error"]["kind"] == "python_exception"
    assert run.step("handler")["result"] == {"kind": "python_exception", "seen": "call.error"}
    assert not run.ran("onward")


def test_an_unconditional_arc_is_not_taken_when_the_step_fails(runs: Batch) -> None:
    run = runs["unconditional_not_taken_on_failure"]
    failed(run)
    assert not run.ran("onward")
    assert run.doc["error"]["step"] == "boom"
    assert run.doc["error"]["kind"] == "python_exception"


def test_a_failed_step_with_no_handler_fails_the_execution(runs: Batch) -> None:
    run = runs["failed_without_next"]
    failed(run)
    assert run.step("boom")["status"] == "failed"
    assert run.doc["error"]["step"] == "boom"
    assert "boom" in run.doc["error"]["message"]
    assert [e["type"] for e in terminal_events(run.log)] == ["execution.failed"]


def test_a_when_that_cannot_be_evaluated_after_a_failure_counts_as_false(runs: Batch) -> None:
    run = runs["unevaluable_when_on_failure"]
    completed(run)
    assert not run.ran("big")
    assert run.step("handler")["result"] == "handled"


def test_a_when_that_cannot_be_evaluated_after_a_failure_is_recorded_as_a_warning(runs: Batch) -> None:
    run = runs["unevaluable_when_on_failure"]
    warnings = [w for e in run.log for w in e["payload"].get("warnings") or []]
    assert any("boom" in w and "big" in w for w in warnings), warnings


def test_event_name_is_call_done_after_a_success(runs: Batch) -> None:
    run = runs["success_arc_not_taken_on_success_when_call_error"]
    completed(run)
    assert run.ran("on_done") and not run.ran("on_error")


def test_a_best_effort_step_fails_without_failing_the_execution(runs: Batch) -> None:
    run = runs["best_effort"]
    completed(run)
    assert run.step("shaky")["status"] == "failed"
    assert run.step("steady")["result"] == "steady"
    assert not run.ran("after_shaky")  # unconditional arcs are still the success path only


# ---------------------------------------------------------------------- section 4.1: joins
def test_a_join_after_an_inclusive_fan_out_runs_once_after_every_branch_and_sees_all_results(
        runs: Batch) -> None:
    run = runs["join_after_inclusive_fan_out"]
    completed(run)
    assert run.step("join")["result"] == {"total": 111, "seen": 3}
    assert len(of_type(run.log, "step.scheduled", "join")) == 1
    assert len(of_type(run.log, "step.started", "join")) == 1
    [scheduled] = of_type(run.log, "step.scheduled", "join")
    finished = {e["step"]: e["seq"] for e in of_type(run.log, "step.succeeded")}
    assert all(finished[b] < scheduled["seq"] for b in ("slow", "quick", "middle")), finished
    assert finished["quick"] < finished["slow"]  # the arrivals were spread out


def test_a_join_behind_an_exclusive_choice_runs_once_with_the_branch_taken(runs: Batch) -> None:
    run = runs["join_behind_exclusive_choice"]
    completed(run)
    assert run.step("join")["result"] == {"side": "y", "x_ran": "no"}
    assert not run.ran("x")
    assert len(of_type(run.log, "step.scheduled", "join")) == 1


def test_a_join_waits_for_a_branch_that_finishes_without_routing_to_it(runs: Batch) -> None:
    run = runs["join_when_a_branch_routes_elsewhere"]
    completed(run)
    assert run.step("join")["result"] == "a"
    assert run.step("side")["result"] == "side"
    [scheduled] = of_type(run.log, "step.scheduled", "join")
    [b_done] = of_type(run.log, "step.succeeded", "b")
    assert b_done["seq"] < scheduled["seq"], "the join ran on the first arrival"


def test_a_join_still_runs_once_when_a_best_effort_branch_fails_instead_of_arriving(runs: Batch) -> None:
    run = runs["join_after_a_best_effort_failure"]
    completed(run)
    assert run.step("b")["status"] == "failed"
    assert run.step("join")["result"] == ["a", None]
    [scheduled] = of_type(run.log, "step.scheduled", "join")
    [b_failed] = of_type(run.log, "step.failed", "b")
    assert b_failed["seq"] < scheduled["seq"]


def test_a_join_does_not_run_when_a_branch_fails_unhandled(runs: Batch) -> None:
    run = runs["join_after_an_unhandled_failure"]
    failed(run)
    assert not run.ran("join")
    assert run.doc["error"]["step"] == "b"


def test_the_final_step_runs_once_after_everything_else(runs: Batch) -> None:
    run = runs["final_step"]
    completed(run)
    assert run.step("cleanup")["result"] == "ab"
    [scheduled] = of_type(run.log, "step.scheduled", "cleanup")
    assert all(e["seq"] < scheduled["seq"] for e in of_type(run.log, "step.succeeded")
               if e["step"] != "cleanup")
    assert run.log[-1]["type"] == "execution.completed"


def test_entry_step_chooses_where_the_execution_starts(runs: Batch) -> None:
    run = runs["entry_step"]
    completed(run)
    assert run.step("second")["result"] == "second"
    assert not run.ran("first")


# ---------------------------------------------------------------------- section 4.2: status
@pytest.mark.parametrize("key", ["join_after_inclusive_fan_out", "failed_without_next"])
def test_the_last_event_of_an_execution_is_its_one_terminal_event(runs: Batch, key: str) -> None:
    run = runs[key]
    [terminal] = terminal_events(run.log)
    assert run.log[-1] == terminal
    assert terminal["type"] == f"execution.{run.status}"


def test_noetl_status_reports_the_status_of_the_terminal_event_and_exits_by_it(runs: Batch,
                                                                             noetl: Noetl) -> None:
    run = runs["failed_without_next"]
    status = noetl("status", run.doc["execution_id"], "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["status"] == "failed" == run.log[-1]["type"].split(".")[1]
