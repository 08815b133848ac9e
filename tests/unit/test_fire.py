"""The pure firing function: routing, joins in any arrival order, loops, failures, termination, replay."""

from __future__ import annotations

import itertools
import textwrap
import uuid
from typing import Any

import pytest

from engine.net.fire import Decision, fire
from engine.net.state import ExecutionState
from engine.net.validate import validate_file, validate_text
from engine.protocol.commands import CancelStep, RunStep
from engine.protocol.events import INPUT_EVENTS, Event
from engine.protocol.results import ResultEnvelope
from engine.protocol.sql_result import StatementResult, sql_result
from tests.conftest import EXAMPLES

HEAD = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: t}\n"


class Sim:
    """Drives `fire` by hand, playing the workers: the test says which command finishes how."""

    def __init__(self, text: str | None = None, *, path: str | None = None,
                 payload: dict[str, Any] | None = None) -> None:
        result = validate_file(path) if path else validate_text(HEAD + textwrap.dedent(text or ""))
        assert result.net is not None, [d.format() for d in result.diagnostics]
        self.net = result.net
        self.state = ExecutionState("exec-1")
        self.inputs: list[Event] = []
        self.derived: list[Event] = []
        self.commands: list[RunStep | CancelStep] = []
        self.dispatched: list[RunStep] = []
        self.feed("execution.started", payload={"payload": payload or {}})

    def feed(self, type_: str, **fields: Any) -> Decision:
        event = Event(event_id=uuid.uuid4().hex, idempotency_key=uuid.uuid4().hex,
                      execution_id="exec-1", type=type_, **fields)
        self.inputs.append(event)
        decision = fire(self.net, self.state, event)
        self.derived.extend(decision.events)
        self.commands.extend(decision.commands)
        self.dispatched.extend(c for c in decision.commands if isinstance(c, RunStep))
        return decision

    def running(self, step: str | None = None) -> list[RunStep]:
        pending = set(self.state.pending)
        return [c for c in self.dispatched if c.command_id in pending and (step is None or c.step == step)]

    def command(self, step: str, loop_index: int | None = None) -> RunStep:
        for cmd in self.running(step):
            if cmd.loop_index == loop_index:
                return cmd
        raise AssertionError(f"{step}[{loop_index}] is not running; running: "
                             f"{[(c.step, c.loop_index) for c in self.running()]}")

    def succeed(self, step: str, data: Any = None, *, loop_index: int | None = None,
                ctx: dict[str, Any] | None = None) -> Decision:
        cmd = self.command(step, loop_index)
        type_ = "step.succeeded" if loop_index is None else "loop.item.succeeded"
        return self.feed(type_, step=step, command_id=cmd.command_id, loop_index=loop_index,
                         result=ResultEnvelope.ok(data), payload={"ctx": ctx} if ctx else {})

    def fail(self, step: str, kind: str = "python_exception", *, loop_index: int | None = None) -> Decision:
        cmd = self.command(step, loop_index)
        type_ = "step.failed" if loop_index is None else "loop.item.failed"
        return self.feed(type_, step=step, command_id=cmd.command_id, loop_index=loop_index,
                         result=ResultEnvelope.fail(kind, f"{step} broke"))

    def types(self) -> list[str]:
        return [e.type for e in self.derived]

    def ran(self, step: str) -> int:
        return sum(1 for c in self.dispatched if c.step == step)

    def replayed(self) -> ExecutionState:
        """The state that firing this run's input events afresh gives; it must equal this run's state,
        with the same derived events (every input being an input event)."""
        replay = ExecutionState("exec-1")
        derived: list[Event] = []
        for event in self.inputs:
            assert event.type in INPUT_EVENTS
            derived.extend(fire(self.net, replay, event).events)
        assert replay == self.state
        assert [e.model_dump() for e in derived] == [e.model_dump() for e in self.derived]
        return replay


def test_a_chain_runs_in_order_and_completes_with_an_explicit_event() -> None:
    sim = Sim(path=str(EXAMPLES / "01_hello.yaml"))
    assert [c.step for c in sim.running()] == ["greet"]
    assert sim.command("greet").context.workload == {"name": "NoETL"}
    sim.succeed("greet", {"greeting": "Hello, NoETL"})
    assert sim.command("shout").context.results["greet"].data == {"greeting": "Hello, NoETL"}
    assert sim.state.status == "running"
    sim.succeed("shout", "HELLO, NOETL")
    assert sim.state.status == "completed"
    assert sim.types()[-1] == "execution.completed"
    assert sim.state.result == "HELLO, NOETL"


@pytest.mark.parametrize("order", list(itertools.permutations("abc")), ids="".join)
def test_a_join_runs_once_after_every_branch_in_any_arrival_order(order: tuple[str, ...]) -> None:
    sim = Sim(path=str(EXAMPLES / "02_join.yaml"))
    sim.succeed("start", {})
    assert sorted(c.step for c in sim.running()) == ["a", "b", "c"]
    for i, branch in enumerate(order):
        sim.succeed(branch, {"n": "abc".index(branch) + 1, "name": branch})
        if i < 2:
            assert sim.ran("merge") == 0, f"merge ran after only {order[:i + 1]}"
    assert sim.ran("merge") == 1
    merge = sim.command("merge")
    assert set(merge.context.results) == {"a", "b", "c"}  # the results merge's templates read
    sim.succeed("merge", {"total": 6})
    assert sim.state.status == "completed" and sim.ran("merge") == 1


def test_a_join_behind_an_exclusive_choice_waits_only_for_the_branch_taken() -> None:
    sim = Sim(path=str(EXAMPLES / "10_short_forms.yaml"), payload={"n": 7})
    sim.succeed("start", {"n": 1})
    assert [c.step for c in sim.running()] == ["big"]
    assert sim.command("big").context.arc_args == {"value": 7}
    assert sim.state.ctx == {"value": 7}
    sim.succeed("big", "big 7")
    sim.succeed("done", {})
    assert sim.state.status == "completed"
    assert sim.ran("small") == 0


@pytest.mark.parametrize(("payload", "taken", "skipped"), [({}, "hot", "cold"),
                                                          ({"temperature_c": 10}, "cold", "hot")])
def test_exclusive_routing_takes_the_first_arc_whose_condition_holds(payload: dict[str, Any], taken: str,
                                                                     skipped: str) -> None:
    sim = Sim(path=str(EXAMPLES / "03_exclusive_routing.yaml"), payload=payload)
    t = sim.state.workload["temperature_c"]
    sim.succeed("measure", {"is_hot": t >= 25})
    assert [c.step for c in sim.running()] == [taken]
    sim.succeed(taken, taken)
    sim.succeed("report", taken)
    assert sim.state.status == "completed" and sim.ran(skipped) == 0


def test_a_parallel_loop_respects_max_in_flight_and_keeps_input_order() -> None:
    sim = Sim(path=str(EXAMPLES / "04_loop_parallel.yaml"))
    assert sorted(c.loop_index for c in sim.running("square")) == [0, 1, 2]
    assert sim.command("square", 0).context.iter == {"x": 0, "_index": 0, "_first": True, "_last": False}
    finished = 0
    while sim.running("square"):
        assert len(sim.running("square")) <= 3
        newest = max(c.loop_index for c in sim.running("square"))  # finish out of order
        sim.succeed("square", newest * newest, loop_index=newest)
        finished += 1
    assert finished == 8
    assert sim.state.steps["square"].result.data == [0, 1, 4, 9, 16, 25, 36, 49]
    assert [c.step for c in sim.running()] == ["total"]
    assert "loop.completed" in sim.types() and "loop.started" in sim.types()


def test_a_best_effort_loop_records_failed_items_as_null_and_counts_them() -> None:
    sim = Sim(path=str(EXAMPLES / "05_loop_best_effort.yaml"))
    for i, value in enumerate([1, 2, None, 4]):
        if value is None:
            sim.fail("parse", loop_index=i)
        else:
            sim.succeed("parse", value, loop_index=i)
    assert sim.state.status == "completed"
    result = sim.state.steps["parse"].result
    assert result.data == [1, 2, None, 4]
    assert result.stats == {"total": 4, "succeeded": 3, "failed": 1}


def test_a_failed_item_of_a_fail_fast_loop_cancels_the_others_and_fails_the_execution() -> None:
    sim = Sim("""\
        workflow:
          - step: each
            loop: {in: [1, 2, 3, 4], iterator: x, spec: {mode: parallel, max_in_flight: 2}}
            tool: {kind: noop}
        """)
    sim.fail("each", loop_index=0)
    cancels = [c for c in sim.commands if isinstance(c, CancelStep)]
    assert [c.command_id for c in cancels] == [sim.command("each", 1).command_id]
    assert sim.state.status == "running"  # item 1 is still running: no terminal event yet
    sim.fail("each", "cancelled", loop_index=1)
    assert sim.state.status == "failed"
    assert sim.ran("each") == 2  # items 2 and 3 never started
    assert sim.types().count("execution.failed") == 1


def test_an_empty_loop_completes_at_once_with_an_empty_list() -> None:
    sim = Sim("""\
        workflow:
          - step: each
            loop: {in: "{{ [] }}", iterator: x}
            tool: {kind: noop}
            next: after
          - {step: after, tool: {kind: noop}}
        """)
    assert sim.state.steps["each"].result.data == []
    assert sim.state.steps["each"].result.stats == {"total": 0, "succeeded": 0, "failed": 0}
    assert [c.step for c in sim.running()] == ["after"]


def test_a_loop_over_a_sql_result_iterates_its_rows() -> None:
    sim = Sim("""\
        workflow:
          - step: q
            tool: {kind: duckdb, command: "SELECT 1"}
            next: each
          - step: each
            loop: {in: "{{ q }}", iterator: row, spec: {mode: parallel}}
            tool: {kind: noop}
        """)
    rows = [{"id": 1}, {"id": 2}]
    sim.succeed("q", sql_result([StatementResult(affected=2), StatementResult(["id"], rows)]))
    assert [c.context.iter["row"] for c in sim.running("each")] == rows


def test_a_failure_routed_to_a_handler_is_handled() -> None:
    sim = Sim(path=str(EXAMPLES / "07_failure_handler.yaml"))
    sim.fail("divide", "python_exception")
    assert [c.step for c in sim.running()] == ["fallback"]  # the unconditional arc is the success path
    sim.succeed("fallback", 0)
    assert sim.state.status == "completed"
    assert sim.state.steps["divide"].status == "failed"
    assert sim.state.steps["divide"].error.kind == "python_exception"


def test_an_unhandled_failure_cancels_running_steps_and_fails_once_they_finish() -> None:
    sim = Sim(path=str(EXAMPLES / "02_join.yaml"))
    sim.succeed("start", {})
    sim.fail("a")
    cancelled = {c.command_id for c in sim.commands if isinstance(c, CancelStep)}
    assert cancelled == {sim.command("b").command_id, sim.command("c").command_id}
    assert sim.state.status == "running"
    sim.succeed("b", {"n": 2})
    sim.fail("c", "cancelled")
    assert sim.state.status == "failed"
    assert sim.ran("merge") == 0
    assert sim.derived[-1].type == "execution.failed"
    assert sim.derived[-1].payload["error"]["step"] == "a"


def test_set_order_is_step_set_then_arc_set_then_dispatch() -> None:
    sim = Sim(path=str(EXAMPLES / "12_set_ctx.yaml"))
    sim.succeed("config", {"limit": 50, "source": "api"})
    use = sim.command("use")
    assert use.context.ctx == {"limit": 50, "source": "api", "route": "b"}
    writes = [e.payload["writes"] for e in sim.derived if e.type == "ctx.updated"]
    assert writes == [{"ctx.limit": 50}, {"ctx.source": "api", "ctx.route": "b"}]


def test_a_cycle_runs_a_step_again_until_its_exit_holds() -> None:
    sim = Sim(path=str(EXAMPLES / "14_cycle_poll.yaml"))
    for n in range(1, 5):
        assert sim.command("poll").context.ctx == ({} if n == 1 else {"n": n - 1})
        sim.succeed("poll", {"n": n, "ready": n >= 4})
    sim.succeed("done", {})
    assert sim.state.status == "completed"
    assert sim.state.steps["poll"].runs == 4


def test_max_runs_stops_a_runaway_cycle_with_a_clear_error() -> None:
    sim = Sim("""\
        workflow:
          - step: spin
            spec: {max_runs: 3}
            tool: {kind: noop}
            next: spin
        """)
    for _ in range(3):
        sim.succeed("spin", {})
    assert sim.state.status == "failed"
    assert "max_runs=3" in sim.state.error.message


def test_cancellation_cancels_running_commands_and_ends_cancelled() -> None:
    sim = Sim(path=str(EXAMPLES / "02_join.yaml"))
    sim.succeed("start", {})
    sim.feed("execution.cancel_requested", payload={"reason": "operator"})
    assert len([c for c in sim.commands if isinstance(c, CancelStep)]) == 3
    for step in "abc":
        sim.fail(step, "cancelled")
    assert sim.state.status == "cancelled"
    assert sim.types()[-1] == "execution.cancelled"
    assert sim.ran("merge") == 0


def test_a_command_carries_only_the_results_its_templates_read() -> None:
    sim = Sim("""\
        workflow:
          - {step: a, tool: {kind: noop, result: 1}, next: b}
          - {step: b, tool: {kind: noop, result: 2}, next: c}
          - step: c
            tool: {kind: noop, result: "{{ b + 1 }}"}
        """)
    sim.succeed("a", 1)
    sim.succeed("b", 2)
    assert set(sim.command("c").context.results) == {"b"}


def test_a_duplicate_or_late_outcome_changes_nothing() -> None:
    sim = Sim(path=str(EXAMPLES / "01_hello.yaml"))
    cmd = sim.command("greet")
    sim.succeed("greet", {"greeting": "hi"})
    before = (list(sim.types()), dict(sim.state.pending))
    sim.feed("step.succeeded", step="greet", command_id=cmd.command_id, result=ResultEnvelope.ok("again"))
    assert (sim.types(), sim.state.pending) == before
    assert sim.state.steps["greet"].result.data == {"greeting": "hi"}


def test_an_undefined_variable_in_a_step_input_fails_that_step() -> None:
    sim = Sim("""\
        workflow:
          - step: a
            input: {x: "{{ ctx.team.slack }}"}
            tool: {kind: noop}
        """)
    assert sim.state.status == "failed"
    assert sim.state.steps["a"].error.kind == "undefined_variable"
    assert "`ctx.team.slack`" in sim.state.steps["a"].error.message


def test_a_missing_value_in_a_step_input_is_a_warning_on_its_scheduled_event() -> None:
    sim = Sim("""\
        workflow:
          - step: start
            tool: {kind: noop}
            next: [{step: right}, {step: left}]
          - {step: right, tool: {kind: noop}, next: describe}
          - {step: left, tool: {kind: noop}, next: describe}
          - step: describe
            input:
              label: "{{ ctx.label | default('none') }}"
              note: "{{ ctx.note }}"
              branch: "{{ left.side if left else right.side }}"
            tool: {kind: noop}
        """)
    sim.succeed("start", {})
    sim.succeed("right", {"side": "right"})
    describe = sim.command("describe")
    assert describe.input == {"label": "none", "note": None, "branch": "right"}
    scheduled = [e for e in sim.derived if e.type == "step.scheduled" and e.step == "describe"]
    assert scheduled[0].payload["warnings"] == ["step 'describe' input: `ctx.note` was not set"]


def test_the_final_step_runs_once_after_everything_else() -> None:
    sim = Sim("""\
        executor: {spec: {final_step: cleanup}}
        workflow:
          - step: a
            tool: {kind: noop}
          - step: cleanup
            tool: {kind: noop}
        """)
    sim.succeed("a", {})
    assert [c.step for c in sim.running()] == ["cleanup"]
    sim.succeed("cleanup", {})
    assert sim.state.status == "completed" and sim.ran("cleanup") == 1


def test_admit_rules_skip_a_step_that_is_not_allowed() -> None:
    sim = Sim("""\
        workload: {enabled: false}
        workflow:
          - step: gate
            spec:
              policy:
                admit:
                  rules:
                    - when: "{{ workload.enabled }}"
                      then: {allow: true}
                    - else: {then: {allow: false}}
            tool: {kind: noop}
        """)
    assert sim.state.steps["gate"].status == "skipped"
    assert "step.skipped" in sim.types() and sim.state.status == "completed"


def test_no_next_is_error_fails_a_step_whose_arcs_all_miss() -> None:
    sim = Sim("""\
        executor: {spec: {no_next_is_error: true}}
        workflow:
          - step: a
            tool: {kind: noop}
            next: [{step: b, when: "{{ false }}"}]
          - {step: b, tool: {kind: noop}}
        """)
    sim.succeed("a", {})
    assert sim.state.status == "failed"


def test_workload_templates_render_once_with_the_payload_deep_merged() -> None:
    sim = Sim("""\
        workload:
          db: {host: localhost, port: 5432}
          label: "run-{{ execution_id }}"
        workflow:
          - {step: a, tool: {kind: noop}}
        """, payload={"db": {"port": 6543}})
    assert sim.state.workload == {"db": {"host": "localhost", "port": 6543}, "label": "run-exec-1"}


@pytest.mark.parametrize("example", ["02_join.yaml", "04_loop_parallel.yaml", "07_failure_handler.yaml",
                                     "14_cycle_poll.yaml"])
def test_replaying_the_input_events_reproduces_the_state_and_the_decisions(example: str) -> None:
    sim = Sim(path=str(EXAMPLES / example))
    while sim.running() and sim.state.status == "running":
        cmd = sim.running()[-1]
        if cmd.step == "divide":
            sim.fail("divide")
        elif cmd.step == "poll":
            n = sim.state.steps["poll"].runs
            sim.succeed("poll", {"n": n, "ready": n >= 3})
        else:
            sim.succeed(cmd.step, cmd.loop_index, loop_index=cmd.loop_index)
    assert sim.state.status == "completed"
    sim.replayed()
