"""A change's measured effect: outcomes from events, failure rate and median duration, the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.protocol.events import Event
from policies.effect import RunOutcome, compare, measure, run_outcome, stats, verified
from policies.model import StepStats

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(n: int, type_: str, step: str | None = None, ms: int = 0, **payload: object) -> Event:
    return Event(event_id=f"e{n}", idempotency_key=f"k{n}", execution_id="x", type=type_, step=step,  # type: ignore[arg-type]
                 payload=dict(payload), timestamp=T0 + timedelta(milliseconds=ms))


def test_the_outcome_of_a_step_in_one_execution() -> None:
    events = [event(1, "execution.started", overlays={"versions": {"s": 3}}),
              event(2, "step.scheduled", "s", 0), event(3, "step.retrying", "s", 100),
              event(4, "step.succeeded", "s", 250), event(5, "execution.completed", ms=260)]
    run = run_outcome("x", events, "s")
    assert (run.outcome, run.duration_ms, run.overlay_version, run.ended) == ("succeeded", 250.0, 3, True)
    assert run_outcome("x", events, "other").outcome is None
    failed = run_outcome("x", [event(1, "execution.started"), event(2, "step.scheduled", "s"),
                               event(3, "step.failed", "s", 10)], "s")
    assert (failed.outcome, failed.overlay_version) == ("failed", None)


def test_stats() -> None:
    runs = [RunOutcome("a", "failed", 10), RunOutcome("b", "succeeded", 30), RunOutcome("c", None),
            RunOutcome("d", "succeeded", 20)]
    assert stats(runs) == StepStats(runs=3, failures=1, failure_rate=0.3333, median_duration_ms=20.0)
    assert stats([]) == StepStats()


def s(runs: int, failures: int, median: float) -> StepStats:
    return StepStats(runs=runs, failures=failures, failure_rate=failures / runs if runs else None,
                     median_duration_ms=median)


def test_verdicts() -> None:
    assert compare(s(4, 2, 20), s(3, 0, 900))[0] == "improved"  # fewer failures, slower: still better
    assert compare(s(4, 0, 1000), s(3, 3, 1000))[0] == "worse"
    assert compare(s(4, 0, 1000), s(3, 0, 1100))[0] == "unchanged"
    assert compare(s(4, 0, 1000), s(3, 0, 2000))[0] == "worse"  # same failures, much slower
    assert compare(s(4, 0, 10), s(3, 0, 40))[0] == "unchanged"  # slower, but by less than 100 ms
    assert compare(StepStats(), s(3, 0, 10))[0] == "unchanged"  # no baseline
    assert compare(StepStats(), s(3, 2, 10))[0] == "worse"
    assert compare(s(4, 1, 10), StepStats())[0] == "insufficient"
    assert verified("improved") and verified("unchanged") and not verified("worse")


def test_measure_names_the_executions() -> None:
    m = measure([RunOutcome("a", "failed", 10)], [RunOutcome("b", "succeeded", 12)], at=T0)
    assert (m.verdict, m.executions_before, m.executions_after) == ("improved", ["a"], ["b"])
    assert m.measured_at == T0
