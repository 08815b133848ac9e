"""The pure firing function on cursor loops (spec 6.1): claimers issued as commands, rows folded as they
are reported, the loop ending when every claimer has stopped, results in claim order, replay."""

from __future__ import annotations

from typing import Any

from engine.net.fire import Decision
from engine.protocol.commands import CancelStep, RunStep
from engine.protocol.results import ResultEnvelope
from tests.unit.test_fire import Sim

CURSOR = """\
    workload: {pg_auth: pg_main}
    workflow:
      - step: start
        tool: {kind: noop, result: {batch: 7}}
        next: work
      - step: work
        spec: {policy: {failure: {mode: %(mode)s}}}
        loop:
          cursor:
            kind: postgres
            auth: "{{ workload.pg_auth }}"
            claim: >-
              UPDATE q SET s = 'claimed' WHERE batch = {{ start.batch }}
              RETURNING id LIMIT {{ __frame_max_rows }}
          iterator: job
          spec:
            mode: cursor
            max_in_flight: 3
            frame: {max_rows: 2, lease_seconds: 60, heartbeat_seconds: 30}
        tool: {kind: postgres, auth: pg_main, command: "UPDATE q SET s = 'done' WHERE id = {{ job.id }}"}
        set: {ctx.claimed: "{{ work.stats.claimed }}", ctx.first: "{{ work.results[0] }}"}
        next: after
      - step: after
        tool: {kind: noop, result: "{{ work.results }}"}
    """


def cursor_sim(mode: str = "fail_fast") -> Sim:
    sim = Sim(CURSOR % {"mode": mode})
    sim.succeed("start", {"batch": 7})
    return sim


def claimer(sim: Sim, k: int) -> RunStep:
    for command in sim.running("work"):
        if command.cursor is not None and command.cursor.claimer == k:
            return command
    raise AssertionError(f"claimer {k} is not running")


def row(sim: Sim, k: int, *, at: float, claim: int = 0, number: int = 0, data: Any = None,
        delivery: int = 1, run: str = "r1", error: str | None = None,
        ctx: dict[str, Any] | None = None) -> Decision:
    """Claimer k reports one row (claimed at `at`), as its worker does."""
    command = next(c for c in sim.dispatched if c.cursor is not None and c.cursor.claimer == k)
    payload: dict[str, Any] = {"cursor": {"claimer": k, "delivery": delivery, "run": run, "claim": claim,
                                          "row": number, "at": at}}
    if ctx:
        payload["ctx"] = ctx
    result = ResultEnvelope.ok(data) if error is None else ResultEnvelope.fail(error, f"row broke: {error}")
    return sim.feed("loop.item.succeeded" if error is None else "loop.item.failed", step="work",
                    command_id=command.command_id, run=command.run, loop_index=number, result=result,
                    payload=payload)


def stop(sim: Sim, k: int, *, rows: int, delivery: int = 1, run: str = "r1",
         error: tuple[str, str] | None = None) -> Decision:
    """Claimer k ends: its claim returned no row (or failed, or it was cancelled)."""
    command = claimer(sim, k)
    result = ResultEnvelope.ok({"rows": rows}) if error is None else ResultEnvelope.fail(*error)
    return sim.feed("loop.claimer.stopped", step="work", command_id=command.command_id, run=command.run,
                    result=result, payload={"cursor": {"claimer": k, "delivery": delivery, "run": run,
                                                       "rows": rows}})


def test_a_cursor_loop_issues_max_in_flight_claimers_each_carrying_its_claim() -> None:
    sim = cursor_sim()
    commands = sim.running("work")
    assert sorted(c.cursor.claimer for c in commands if c.cursor is not None) == [0, 1, 2]
    first = claimer(sim, 0)
    assert first.loop_index is None and first.iterator == "job"
    assert first.cursor is not None
    assert first.cursor.model_dump() == {"claimer": 0, "kind": "postgres", "auth": "{{ workload.pg_auth }}",
                                         "connection_string": None, "claim": first.cursor.claim,
                                         "max_rows": 2, "heartbeat_s": 20.0}  # at most a third of the lease
    assert "{{ __frame_max_rows }}" in first.cursor.claim  # rendered by the claimer
    assert first.context.results["start"].data == {"batch": 7}  # the claim reads it
    assert len({c.command_id for c in commands}) == 3
    [started] = [e for e in sim.derived if e.type == "loop.started"]
    assert started.payload["cursor"] == {"kind": "postgres", "claimers": 3, "max_rows": 2}
    assert sim.state.steps["work"].status == "running"


def test_the_loop_ends_when_every_claimer_stopped_with_its_results_in_claim_order() -> None:
    sim = cursor_sim()
    row(sim, 1, at=10.5, data={"id": 3})
    row(sim, 0, at=10.0, claim=0, number=1, data={"id": 2})
    row(sim, 0, at=10.0, claim=0, number=0, data={"id": 1}, ctx={"ctx.last": 1})
    row(sim, 2, at=11.0, data={"id": 4})
    stop(sim, 0, rows=2)
    stop(sim, 2, rows=1)
    assert sim.ran("after") == 0 and "work" in sim.state.loops  # claimer 1 still works
    row(sim, 1, at=12.0, claim=1, data={"id": 5})
    stop(sim, 1, rows=2)
    assert "work" not in sim.state.loops
    result = sim.state.steps["work"].result
    assert result is not None
    assert result.data == {"stats": {"claimed": 5, "succeeded": 5, "failed": 0},
                           "results": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}]}
    assert sim.state.ctx == {"last": 1, "claimed": 5, "first": {"id": 1}}  # the step's set, once
    assert sim.command("after").context.results["work"].data["results"][4] == {"id": 5}
    [completed] = [e for e in sim.derived if e.type == "loop.completed"]
    assert completed.payload["stats"] == {"claimed": 5, "succeeded": 5, "failed": 0}
    [outcome] = [e for e in sim.derived if e.type == "step.succeeded" and e.step == "work"]
    assert outcome.payload["cursor"] is True and outcome.result is not None
    sim.succeed("after", [1])
    assert sim.state.status == "completed"


def test_an_empty_queue_completes_the_loop_once_every_claimer_found_nothing() -> None:
    sim = cursor_sim()
    for k in range(3):
        stop(sim, k, rows=0)
    result = sim.state.steps["work"].result
    assert result is not None and result.data == {"stats": {"claimed": 0, "succeeded": 0, "failed": 0},
                                                  "results": []}
    assert sim.state.steps["work"].status == "succeeded"


def test_a_stop_that_overtakes_its_rows_waits_for_them() -> None:
    sim = cursor_sim()
    stop(sim, 0, rows=2)  # a redelivered batch may bring the end before the rows it reported
    stop(sim, 1, rows=0)
    stop(sim, 2, rows=0)
    assert "work" in sim.state.loops
    row(sim, 0, at=1.0, data="a")
    assert "work" in sim.state.loops
    row(sim, 0, at=1.0, number=1, data="b")
    assert "work" not in sim.state.loops
    assert sim.state.steps["work"].result.data["results"] == ["a", "b"]  # type: ignore[union-attr]


def test_a_replaced_claimer_reports_new_rows_under_its_new_delivery_and_both_count() -> None:
    sim = cursor_sim()
    row(sim, 0, at=1.0, data="dead-claimer's row")  # then its worker died: the bus redelivers claimer 0
    row(sim, 0, at=5.0, data="replacement's row", delivery=2, run="r2")
    row(sim, 0, at=1.0, data="dead-claimer's row")  # the same event again changes nothing
    stop(sim, 0, rows=1, delivery=2, run="r2")
    stop(sim, 1, rows=0)
    stop(sim, 2, rows=0)
    assert sim.state.steps["work"].result.data == {  # type: ignore[union-attr]
        "stats": {"claimed": 2, "succeeded": 2, "failed": 0},
        "results": ["dead-claimer's row", "replacement's row"]}


def test_a_failed_row_of_a_fail_fast_cursor_loop_cancels_the_claimers_and_fails_the_step() -> None:
    sim = cursor_sim()
    row(sim, 0, at=1.0, data="ok")
    decision = row(sim, 1, at=2.0, error="db_constraint")
    cancelled = {c.command_id for c in decision.commands if isinstance(c, CancelStep)}
    assert cancelled == {claimer(sim, k).command_id for k in range(3)}
    stop(sim, 0, rows=1, error=("cancelled", "cancelled"))
    stop(sim, 1, rows=1, error=("cancelled", "cancelled"))
    stop(sim, 2, rows=0, error=("cancelled", "cancelled"))
    record = sim.state.steps["work"]
    assert record.status == "failed" and record.error is not None
    assert record.error.kind == "db_constraint"
    assert record.error.message.startswith("row 1 of cursor loop 'work' (claimer 1) failed")
    assert record.result.data["stats"] == {"claimed": 2, "succeeded": 1, "failed": 1}  # type: ignore[union-attr]
    assert sim.state.status == "failed" and sim.ran("after") == 0


def test_a_best_effort_cursor_loop_records_a_failed_row_as_null_and_goes_on() -> None:
    sim = cursor_sim("best_effort")
    decision = row(sim, 0, at=1.0, error="python_exception")
    assert not [c for c in decision.commands if isinstance(c, CancelStep)]
    row(sim, 1, at=2.0, data="ok")
    for k, rows in ((0, 1), (1, 1), (2, 0)):
        stop(sim, k, rows=rows)
    record = sim.state.steps["work"]
    assert record.status == "succeeded"
    assert record.result.data == {"stats": {"claimed": 2, "succeeded": 1, "failed": 1},  # type: ignore[union-attr]
                                  "results": [None, "ok"]}
    assert sim.ran("after") == 1


def test_a_failed_claim_fails_the_step_with_its_kind_once_the_other_claimers_stopped() -> None:
    sim = cursor_sim("best_effort")  # a claim error is not a row: it fails the step in any mode
    decision = stop(sim, 2, rows=0, error=("sql_syntax", "the claim of claimer 2 failed: syntax error"))
    assert {c.command_id for c in decision.commands if isinstance(c, CancelStep)} == {
        claimer(sim, 0).command_id, claimer(sim, 1).command_id}
    stop(sim, 0, rows=0, error=("cancelled", "cancelled"))
    assert "work" in sim.state.loops
    stop(sim, 1, rows=0, error=("cancelled", "cancelled"))
    record = sim.state.steps["work"]
    assert record.status == "failed" and record.error is not None
    assert record.error.kind == "sql_syntax"
    assert record.error.message == "step 'work': the claim of claimer 2 failed: syntax error"
    assert sim.state.status == "completed"  # best_effort: the failed step ends its branch


def test_cancelling_the_execution_cancels_the_claimers_and_the_loop_fails_cancelled() -> None:
    sim = cursor_sim()
    row(sim, 0, at=1.0, data="ok")
    decision = sim.feed("execution.cancel_requested", payload={"reason": "stop"})
    assert len([c for c in decision.commands if isinstance(c, CancelStep)]) == 3
    for k in range(3):
        stop(sim, k, rows=int(k == 0), error=("cancelled", "cancelled"))
    assert sim.state.steps["work"].status == "failed"
    assert sim.state.status == "cancelled"


def test_a_row_reported_after_the_loop_ended_changes_nothing() -> None:
    sim = cursor_sim()
    for k in range(3):
        stop(sim, k, rows=0)
    before = sim.state.steps["work"].result
    decision = row(sim, 0, at=9.0, data="late")
    assert decision.events == [] and sim.state.steps["work"].result == before


def test_replaying_a_cursor_loop_reproduces_its_state_and_derived_events() -> None:
    sim = cursor_sim()
    row(sim, 2, at=3.0, data={"id": 9})
    row(sim, 0, at=1.0, data={"id": 1}, ctx={"ctx.n": 1})
    stop(sim, 1, rows=0)
    row(sim, 0, at=1.0, number=1, data={"id": 2})
    stop(sim, 0, rows=2)
    row(sim, 2, at=4.0, claim=1, data={"id": 10})
    stop(sim, 2, rows=2)
    sim.succeed("after", "done")
    assert sim.state.status == "completed"
    replay = sim.replayed()
    assert replay.steps["work"].result.data["results"] == [  # type: ignore[union-attr]
        {"id": 1}, {"id": 2}, {"id": 9}, {"id": 10}]
