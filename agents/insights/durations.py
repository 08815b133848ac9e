"""Per playbook and step: how long runs take, how long they queue, whether they got slower, how often they
retry or fail; and the critical path of executions, whose dominant steps are the bottlenecks. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from agents.insights.history import ExecutionRun, StepRun
from agents.insights.stats import median, percentile

SLOWER = 1.25  # a trend: the recent half's p50 this much above the older half's
SLOWER_MIN_MS = 10.0  # ... and at least this much longer (a few ms either way on a tiny step is noise)
MIN_HALF = 4  # runs each half needs for a trend


@dataclass(frozen=True)
class StepFigures:
    path: str
    step: str
    runs: int
    p50_ms: float | None
    p95_ms: float | None
    queue_p50_ms: float | None
    queue_p95_ms: float | None
    wait_p50_ms: float | None  # waiting for capacity in the orchestrator
    trend: float | None  # the newer half's p50 over the older half's (executions in time order)
    slower: bool
    retry_rate: float  # runs that needed more than one attempt (or delivery)
    failure_rate: float


@dataclass(frozen=True)
class Bottleneck:
    path: str
    step: str
    share: float  # of the critical path's time, over the executions that ran it
    executions: int  # how many executions' critical path it was on
    p50_ms: float | None
    queue_share: float  # of its own time on the critical path, spent queueing or waiting
    reason: str


def _ms(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def step_figures(executions: Sequence[ExecutionRun]) -> list[StepFigures]:
    """Figures for every (path, step) with a run in `executions` (ordered by start time)."""
    ordered = sorted(executions, key=lambda e: (e.started_at is None, e.started_at))
    by: dict[tuple[str, str], list[tuple[int, StepRun]]] = defaultdict(list)
    for index, execution in enumerate(ordered):
        for run in execution.runs:
            by[(execution.path, run.step)].append((index, run))
    figures = []
    for (path, step), indexed in sorted(by.items()):
        runs = [run for _, run in indexed]
        durations = _ms([r.run_ms for r in runs if r.status == "succeeded"])
        trend, gained = None, 0.0
        positions = sorted({i for i, _ in indexed})
        if len(positions) >= 4:
            middle = positions[len(positions) // 2]
            older = _ms([r.run_ms for i, r in indexed if i < middle and r.status == "succeeded"])
            newer = _ms([r.run_ms for i, r in indexed if i >= middle and r.status == "succeeded"])
            low, high = median(older), median(newer)
            if low and high is not None and min(len(older), len(newer)) >= MIN_HALF:
                trend = round(high / low, 3)
                gained = high - low
        ended = [r for r in runs if r.status is not None]
        figures.append(StepFigures(
            path=path, step=step, runs=len(runs), p50_ms=_round(percentile(durations, 50)),
            p95_ms=_round(percentile(durations, 95)),
            queue_p50_ms=_round(percentile(_ms([r.queue_ms for r in runs]), 50)),
            queue_p95_ms=_round(percentile(_ms([r.queue_ms for r in runs]), 95)),
            wait_p50_ms=_round(percentile(_ms([r.waited_ms for r in runs]), 50)),
            trend=trend, slower=trend is not None and trend >= SLOWER and gained >= SLOWER_MIN_MS,
            retry_rate=_rate([r for r in ended if r.attempt > 1 or r.deliveries > 1], ended),
            failure_rate=_rate([r for r in ended if r.status == "failed"], ended)))
    return figures


def critical_path(execution: ExecutionRun) -> list[StepRun]:
    """The chain of step runs that ended last: from the run that ended last, back through the run that
    ended last before each one was scheduled (its cause), to the first. Loop items count as their step."""
    done = sorted((r for r in execution.runs if r.ended_at is not None and r.scheduled_at is not None),
                  key=lambda r: r.ended_at)  # type: ignore[arg-type, return-value]
    if not done:
        return []
    path = [done[-1]]
    while True:
        current = path[-1]
        before = [r for r in done if r.ended_at <= current.scheduled_at and r is not current]  # type: ignore
        if not before:
            return list(reversed(path))
        path.append(before[-1])


def bottlenecks(executions: Sequence[ExecutionRun], *, top: int = 5) -> list[Bottleneck]:
    """The steps that take the largest share of their executions' critical paths."""
    time_on: dict[tuple[str, str], float] = defaultdict(float)
    queued_on: dict[tuple[str, str], float] = defaultdict(float)
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    total: dict[str, float] = defaultdict(float)
    for execution in executions:
        if execution.status != "completed":
            continue
        chain = critical_path(execution)
        if not chain:
            continue
        span = (chain[-1].ended_at - chain[0].scheduled_at).total_seconds() * 1000  # type: ignore[operator]
        if span <= 0:
            continue
        total[execution.path] += span
        for run in chain:
            key = (execution.path, run.step)
            time_on[key] += run.total_ms or 0.0
            queued_on[key] += (run.queue_ms or 0.0) + (run.waited_ms or 0.0)
            seen[key].add(execution.execution_id)
    found = []
    for (path, step), spent in time_on.items():
        if total[path] <= 0:
            continue
        share = spent / total[path]
        queue_share = queued_on[(path, step)] / spent if spent else 0.0
        runs = [r.run_ms for e in executions for r in e.runs
                if e.path == path and r.step == step and r.status == "succeeded"]
        where = "waiting for a worker or capacity" if queue_share >= 0.5 else "running"
        count = len(seen[(path, step)])
        found.append(Bottleneck(path=path, step=step, share=round(share, 3), executions=count,
                                p50_ms=_round(median(_ms(runs))), queue_share=round(queue_share, 3),
                                reason=f"{share:.0%} of the critical path of {count} execution(s), mostly "
                                       f"{where}"))
    found.sort(key=lambda b: (-b.share, b.path, b.step))
    return found[:top]


def _rate(part: Sequence[object], whole: Sequence[object]) -> float:
    return round(len(part) / len(whole), 3) if whole else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
