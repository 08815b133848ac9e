"""Runs out of their own history: an execution or a step run whose duration lies far above the median
of the runs before it (median and MAD), or a failure where the history nearly always succeeds. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agents.insights.history import ExecutionRun
from agents.insights.stats import MAD_SCALE, mad, median, robust_z

Z_LIMIT = 4.0  # this many scaled MADs above the median is out of the history
MIN_HISTORY = 8  # fewer earlier runs than this: no judgement
MIN_SPREAD_MS = 5.0  # durations closer than this are the same (timer noise on a step of a few ms)
MIN_RATIO = 2.0  # and an anomaly is at least this many times the median (a 3-sigma run of a step varying
# by 20 % is 1.8x: one in a thousand runs, a false alarm a day on a busy deployment)
RARE_FAILURE = 0.05  # a failure is an anomaly where at most this share of the history failed


@dataclass(frozen=True)
class Anomaly:
    kind: str  # duration | outcome
    scope: str  # execution | step
    path: str
    step: str | None
    execution_id: str
    at: datetime | None
    value_ms: float | None
    median_ms: float | None
    score: float | None  # robust z (duration); the history's failure rate (outcome)
    reason: str


def anomalies(executions: Sequence[ExecutionRun], *, min_history: int = MIN_HISTORY) -> list[Anomaly]:
    """Every execution and step run judged against the runs of the same playbook (and step) that started
    before it, newest first."""
    ordered = sorted((e for e in executions if e.started_at is not None), key=lambda e: e.started_at)  # type: ignore
    found: list[Anomaly] = []
    durations: dict[str, list[float]] = defaultdict(list)
    step_durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    outcomes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for execution in ordered:
        duration = execution.duration_ms
        if duration is not None and execution.status == "completed":
            found += _slow("execution", execution, None, duration, durations[execution.path], min_history)
            durations[execution.path].append(duration)
        for run in execution.runs:
            key = (execution.path, run.step)
            if run.status == "succeeded" and run.run_ms is not None:
                found += _slow("step", execution, run.step, run.run_ms, step_durations[key], min_history)
                step_durations[key].append(run.run_ms)
            if run.status is not None:
                history = outcomes[key]
                if run.status == "failed" and len(history) >= min_history:
                    rate = history.count(False) / len(history)
                    if rate <= RARE_FAILURE:
                        found.append(Anomaly(
                            kind="outcome", scope="step", path=execution.path, step=run.step,
                            execution_id=execution.execution_id, at=run.ended_at, value_ms=run.run_ms,
                            median_ms=None, score=round(rate, 3),
                            reason=f"step '{run.step}' failed ({run.error_kind or 'error'}) where "
                                   f"{len(history) - history.count(False)} of its last {len(history)} runs "
                                   "succeeded"))
                history.append(run.status == "succeeded")
    found.sort(key=lambda a: (a.at is None, a.at), reverse=True)
    return found


def _slow(scope: str, execution: ExecutionRun, step: str | None, value: float, history: list[float],
          min_history: int) -> list[Anomaly]:
    if len(history) < min_history:
        return []
    recent = history[-200:]
    centre = median(recent) or 0.0
    z = robust_z(value, recent, floor=MIN_SPREAD_MS)
    if z is None or z < Z_LIMIT or value < centre * MIN_RATIO:
        return []
    spread = (mad(recent) or 0.0) * MAD_SCALE
    what = f"step '{step}'" if step else "the execution"
    return [Anomaly(kind="duration", scope=scope, path=execution.path, step=step,
                    execution_id=execution.execution_id, at=execution.started_at, value_ms=round(value, 2),
                    median_ms=round(centre, 2), score=round(z, 2),
                    reason=f"{what} took {value / 1000:.3g} s, {value / centre if centre else 0:.1f}x the "
                           f"median {centre / 1000:.3g} s of its last {len(recent)} runs ({z:.1f} scaled "
                           f"MADs above; MAD x1.4826 = {spread / 1000:.3g} s)")]
