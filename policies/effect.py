"""A change's effect: the step over the executions after it against the executions before it. PURE.

`run_outcome(events, step)` folds one execution's events into the step's outcome (succeeded, failed, or
not run) and duration (from its first `step.scheduled` to its final outcome, retries included);
`stats(outcomes)` gives the failure rate and the median duration; `compare(before, after)` the verdict:

- worse:     the failure rate rose (by more than `failure_tolerance`), or it stayed and the median duration
             grew by more than `duration_tolerance` (and by at least `min_duration_ms`)
- improved:  the failure rate fell
- unchanged: neither
- insufficient: no execution after the change ran the step

Without executions before the change (no baseline), a failure rate above one half is worse.
A change is verified when the verdict is improved or unchanged; when it is worse a rollback is proposed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.protocol.events import TERMINAL_EVENTS, Event
from policies.model import Measurement, StepStats, Verdict


@dataclass(frozen=True)
class EffectConfig:
    failure_tolerance: float = 0.0
    duration_tolerance: float = 0.5  # +50 % median duration with the same failure rate is worse
    min_duration_ms: float = 100.0  # ... and at least this much slower


@dataclass(frozen=True)
class RunOutcome:
    execution_id: str
    outcome: str | None  # succeeded | failed | None: the step did not run to an outcome
    duration_ms: float | None = None
    overlay_version: int | None = None  # the step's overlay version the execution started with
    ended: bool = False


def overlay_version(events: Iterable[Event], step: str) -> int | None:
    """The version of the step's overlay an execution started with (None: no overlay)."""
    for event in events:
        if event.type == "execution.started":
            versions = (event.payload.get("overlays") or {}).get("versions") or {}
            value = versions.get(step)
            return int(value) if isinstance(value, int | float) else None
    return None


def run_outcome(execution_id: str, events: Sequence[Event], step: str) -> RunOutcome:
    scheduled: datetime | None = None
    outcome: str | None = None
    finished: datetime | None = None
    ended = False
    for event in events:
        if event.type in TERMINAL_EVENTS:
            ended = True
        if event.step != step or event.loop_index is not None:
            continue
        if event.type in ("step.scheduled", "step.started", "loop.started") and scheduled is None:
            scheduled = event.timestamp
        elif event.type in ("step.succeeded", "step.failed"):
            outcome = "succeeded" if event.type == "step.succeeded" else "failed"
            finished = event.timestamp
    duration = None
    if scheduled is not None and finished is not None:
        duration = max(0.0, (finished - scheduled).total_seconds() * 1000.0)
    return RunOutcome(execution_id, outcome, duration, overlay_version(events, step), ended)


def stats(outcomes: Iterable[RunOutcome]) -> StepStats:
    ran = [o for o in outcomes if o.outcome is not None]
    if not ran:
        return StepStats()
    failures = sum(1 for o in ran if o.outcome == "failed")
    durations = [o.duration_ms for o in ran if o.duration_ms is not None]
    return StepStats(runs=len(ran), failures=failures, failure_rate=round(failures / len(ran), 4),
                     median_duration_ms=round(statistics.median(durations), 1) if durations else None)


def compare(before: StepStats, after: StepStats, config: EffectConfig | None = None
            ) -> tuple[Verdict, list[str]]:
    config = config or EffectConfig()
    if after.runs == 0 or after.failure_rate is None:
        return "insufficient", ["no execution after the change ran the step yet"]
    if before.runs == 0 or before.failure_rate is None:
        if after.failure_rate > 0.5:
            return "worse", [f"no baseline, and the step failed in {after.failures} of {after.runs} runs"]
        return "unchanged", [f"no baseline; the step failed in {after.failures} of {after.runs} runs"]
    rates = f"failure rate {before.failure_rate:.0%} before, {after.failure_rate:.0%} after"
    if after.failure_rate > before.failure_rate + config.failure_tolerance:
        return "worse", [rates]
    if after.failure_rate < before.failure_rate:
        return "improved", [rates]
    b, a = before.median_duration_ms, after.median_duration_ms
    if b is not None and a is not None:
        durations = f"median duration {b:.0f} ms before, {a:.0f} ms after"
        if a > b * (1 + config.duration_tolerance) and a - b >= config.min_duration_ms:
            return "worse", [rates, durations]
        return "unchanged", [rates, durations]
    return "unchanged", [rates]


def measure(before: Sequence[RunOutcome], after: Sequence[RunOutcome], *, at: datetime | None = None,
            config: EffectConfig | None = None) -> Measurement:
    b, a = stats(before), stats(after)
    verdict, reasons = compare(b, a, config)
    return Measurement(before=b, after=a, verdict=verdict, reasons=reasons,
                       executions_before=[o.execution_id for o in before],
                       executions_after=[o.execution_id for o in after], measured_at=at)


def verified(verdict: str) -> bool:
    return verdict in ("improved", "unchanged")
