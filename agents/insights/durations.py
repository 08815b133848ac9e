"""Per playbook and step: how long runs take, how long they queue, whether they got slower, how often they
retry or fail; and the critical path of executions, whose dominant steps are the bottlenecks. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agents.insights.history import ExecutionRun, StepRun
from agents.insights.stats import median, percentile, robust_z

SLOWER = 1.25  # a trend: the recent half's p50 this much above the older half's
SLOWER_MIN_MS = 10.0  # ... and at least this much longer (a few ms either way on a tiny step is noise)
MIN_HALF = 4  # executions each side of a level shift needs
SPLITS = 20  # where a level shift is looked for, at most
OUTLIER = 4.0  # scaled MADs from its side's median: left out when the sides are compared
SURE = 0.95  # ... and a newer run is longer than an older one in at least this share of the pairs (a few
# long runs in a small half would move its median by chance)


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
    trend: float | None  # after the level shift found (else the newer half's) p50 over the runs' before
    slower: bool
    slower_since: datetime | None  # the first execution after the shift
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
        per_execution = [median(d) for d in _by_execution(indexed) if d]
        trend, slower, since_index = _shift([v for v in per_execution if v is not None])
        since = None
        if since_index is not None:
            since = [ordered[i].started_at for i in sorted({i for i, r in indexed if r.status == "succeeded"
                                                            and r.run_ms is not None})][since_index]
        ended = [r for r in runs if r.status is not None]
        figures.append(StepFigures(
            path=path, step=step, runs=len(runs), p50_ms=_round(percentile(durations, 50)),
            p95_ms=_round(percentile(durations, 95)),
            queue_p50_ms=_round(percentile(_ms([r.queue_ms for r in runs]), 50)),
            queue_p95_ms=_round(percentile(_ms([r.queue_ms for r in runs]), 95)),
            wait_p50_ms=_round(percentile(_ms([r.waited_ms for r in runs]), 50)),
            trend=trend, slower=slower, slower_since=since,
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


def _by_execution(indexed: Sequence[tuple[int, StepRun]]) -> list[list[float]]:
    """The successful run times of each execution (in time order) that ran the step successfully."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for index, run in indexed:
        if run.status == "succeeded" and run.run_ms is not None:
            grouped[index].append(run.run_ms)
    return [grouped[i] for i in sorted(grouped)]


def _shift(values: Sequence[float]) -> tuple[float | None, bool, int | None]:
    """(trend, slower, where): whether the run times (one per execution, in time order) stepped up. Each
    split leaving MIN_HALF on either side (at most SPLITS of them, evenly spaced) is tried; a split counts
    when the runs after it are SLOWER times the median before, SLOWER_MIN_MS longer, and longer than the
    runs before in a SURE share of the pairs; the surest wins. Without one, the trend is the newer half's
    median over the older half's."""
    n = len(values)
    if n < 2 * MIN_HALF:
        return None, False, None
    candidates = range(MIN_HALF, n - MIN_HALF + 1)
    step = max(1, len(candidates) // SPLITS)
    best: tuple[float, float, float, int] | None = None  # sure, sure with the outliers, ratio, split
    for k in candidates[::step]:
        low, high = median(values[:k]), median(values[k:])
        if not low or high is None or high / low < SLOWER or high - low < SLOWER_MIN_MS:
            continue
        sure = _superiority(_inliers(values[k:]), _inliers(values[:k]))
        found = (sure, _superiority(values[k:], values[:k]), high / low, k)
        if sure >= SURE and (best is None or found[:3] > best[:3]):
            best = found
    if best is not None:
        return round(best[2], 3), True, best[3]
    low, high = median(values[: n // 2]), median(values[n // 2:])
    return (round(high / low, 3) if low and high is not None else None), False, None


def _inliers(values: Sequence[float]) -> list[float]:
    """The values within OUTLIER scaled MADs of their median (a lone spike, an anomaly of its own, must
    not hide a shift)."""
    return [v for v in values if abs(robust_z(v, values, floor=SLOWER_MIN_MS) or 0.0) <= OUTLIER]


def _superiority(newer: Sequence[float], older: Sequence[float]) -> float:
    """The share of (newer, older) pairs where the newer run took longer (ties count half): the common
    language effect size, 0.5 when nothing changed."""
    pairs = len(newer) * len(older)
    wins = sum(1.0 if n > o else 0.5 if n == o else 0.0 for n in newer for o in older)
    return wins / pairs if pairs else 0.5


def _rate(part: Sequence[object], whole: Sequence[object]) -> float:
    return round(len(part) / len(whole), 3) if whole else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
