"""The event log's rows (control_plane/store/insights.py) folded into executions and step runs: pure.

A step run is one command: a step's run or one loop item's, from `step.scheduled` (or, for an item that
waited for capacity, its `step.dispatched`) through `step.started` to its outcome. Queue time is from
being sent to a pool until a worker started it; run time is the worker's own `duration_ms`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OUTCOMES = frozenset({"step.succeeded", "step.failed", "loop.item.succeeded", "loop.item.failed"})
ENDS = {"execution.completed": "completed", "execution.failed": "failed", "execution.cancelled": "cancelled"}


@dataclass
class StepRun:
    execution_id: str
    path: str
    version: int
    step: str
    command_id: str
    loop_index: int | None = None
    scheduled_at: datetime | None = None
    sent_at: datetime | None = None  # to the pool's queue: scheduled, or dispatched after waiting
    started_at: datetime | None = None
    ended_at: datetime | None = None
    status: str | None = None  # succeeded | failed (None: not ended in the window)
    attempt: int = 1
    deliveries: int = 0  # step.started events (a worker took it again after another one died)
    pool: str | None = None
    worker: str | None = None
    run_ms: float | None = None
    error_kind: str | None = None
    error_message: str | None = None

    @property
    def queue_ms(self) -> float | None:
        if self.sent_at is None or self.started_at is None:
            return None
        return max(0.0, (self.started_at - self.sent_at).total_seconds() * 1000)

    @property
    def waited_ms(self) -> float | None:
        """Waiting for capacity in the orchestrator (scheduled -> dispatched), before the queue."""
        if self.scheduled_at is None or self.sent_at is None:
            return None
        return max(0.0, (self.sent_at - self.scheduled_at).total_seconds() * 1000)

    @property
    def total_ms(self) -> float | None:
        if self.scheduled_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.scheduled_at).total_seconds() * 1000)


@dataclass
class ExecutionRun:
    execution_id: str
    path: str
    version: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    status: str = "running"
    overlays: dict[str, int] = field(default_factory=dict)  # step -> overlay version applied
    error_kind: str | None = None
    runs: list[StepRun] = field(default_factory=list)

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds() * 1000

    @property
    def release(self) -> str:
        """The playbook version and the policy changes it ran with: `v3`, or `v3+retry@2` style."""
        changes = ",".join(f"{step}@{version}" for step, version in sorted(self.overlays.items()))
        return f"v{self.version}" + (f"+{changes}" if changes else "")


def fold(rows: Iterable[Mapping[str, Any]]) -> list[ExecutionRun]:
    """Executions with their step runs, in the order of their first row."""
    executions: dict[str, ExecutionRun] = {}
    commands: dict[tuple[str, str], StepRun] = {}
    for row in rows:
        execution_id = str(row["execution_id"])
        execution = executions.get(execution_id)
        if execution is None:
            execution = executions[execution_id] = ExecutionRun(execution_id, str(row["path"]),
                                                                int(row["version"]))
        kind, at = str(row["type"]), row["at"]
        if kind == "execution.started":
            execution.started_at = at
        elif kind in ENDS:
            execution.ended_at, execution.status = at, ENDS[kind]
            detail = row.get("detail")
            if isinstance(detail, Mapping) and detail.get("kind"):
                execution.error_kind = str(detail["kind"])
        elif kind == "policy.applied" and isinstance(row.get("detail"), Mapping):
            execution.overlays = {str(k): int(v) for k, v in row["detail"].items() if v is not None}
        elif kind in ("step.deferred", "step.dispatched"):
            ids = row.get("detail") if isinstance(row.get("detail"), list) else [row.get("command_id")]
            for command_id in ids or ():
                run = commands.get((execution_id, str(command_id)))
                if run is not None and kind == "step.dispatched":
                    run.sent_at = at
        elif row.get("command_id") and row.get("step"):
            key = (execution_id, str(row["command_id"]))
            run = commands.get(key)
            if run is None:
                run = commands[key] = StepRun(execution_id, execution.path, execution.version,
                                              str(row["step"]), str(row["command_id"]), row.get("loop_index"))
                execution.runs.append(run)
            _apply(run, kind, at, row)
    return list(executions.values())


def _apply(run: StepRun, kind: str, at: datetime, row: Mapping[str, Any]) -> None:
    if row.get("pool"):
        run.pool = str(row["pool"])
    if kind == "step.scheduled":
        run.scheduled_at = at
        run.sent_at = run.sent_at or at
    elif kind == "step.started":
        run.deliveries += 1
        run.started_at = run.started_at or at
        run.worker = row.get("worker") or run.worker
    elif kind in OUTCOMES:
        run.ended_at = at
        run.status = "succeeded" if kind.endswith("succeeded") else "failed"
        run.attempt = int(row.get("attempt") or 1)
        run.run_ms = row.get("duration_ms")
        run.worker = row.get("worker") or run.worker
        if run.status == "failed":
            run.error_kind = row.get("error_kind")
            run.error_message = row.get("error_message")
        if run.scheduled_at is None:  # a loop item: its command went out with the loop's
            run.scheduled_at = run.sent_at = run.started_at
