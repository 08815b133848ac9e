"""The exported tables' rows, built from the event log (pure: no I/O, no clock).

- `events`: one row per stored event;
- `step_runs`: one row per command and attempt (a retry is a new attempt of the same command), built
  when its execution ends, from all of that execution's events;
- `executions`: one row per execution, built when it ends.

`TABLES` describes each table's columns once; the sinks derive their schemas from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from agents.insights.clusters import signature as error_signature

# column kinds: str (never null, '' for none), int, int? (nullable), float?, bool, ts, ts? (UTC, in µs)
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "events": (
        ("event_id", "str"), ("execution_id", "str"), ("seq", "int"), ("type", "str"), ("step", "str"),
        ("loop_index", "int?"), ("command_id", "str"), ("run", "int?"), ("attempt", "int?"),
        ("derived", "bool"), ("occurred_at", "ts"), ("recorded_at", "ts"), ("pool", "str"), ("worker", "str"),
        ("duration_ms", "float?"), ("error_kind", "str"), ("error_signature", "str"),
        ("playbook_path", "str"), ("playbook_version", "int")),
    "step_runs": (
        ("execution_id", "str"), ("command_id", "str"), ("attempt", "int"), ("step", "str"),
        ("loop_index", "int?"), ("run", "int?"), ("playbook_path", "str"), ("playbook_version", "int"),
        ("status", "str"), ("error_kind", "str"), ("error_signature", "str"), ("pool", "str"),
        ("worker", "str"),
        ("queued_at", "ts?"), ("started_at", "ts?"), ("ended_at", "ts?"), ("at", "ts"),
        ("run_ms", "float?"), ("queue_ms", "float?")),
    "executions": (
        ("execution_id", "str"), ("playbook_path", "str"), ("playbook_version", "int"), ("status", "str"),
        ("parent_execution_id", "str"), ("parent_step", "str"), ("created_at", "ts"), ("started_at", "ts?"),
        ("ended_at", "ts?"), ("duration_ms", "float?"), ("error_kind", "str"), ("error_signature", "str"),
        ("step_runs", "int"), ("events", "int"), ("last_seq", "int")),
}
# the column each table is partitioned by (by month in ClickHouse, by day in Parquet)
TIME_COLUMN = {"events": "occurred_at", "step_runs": "at", "executions": "created_at"}

_ENDS = frozenset({"step.succeeded", "step.failed", "loop.item.succeeded", "loop.item.failed",
                   "loop.claimer.stopped", "step.skipped"})
_TERMINAL = frozenset({"execution.completed", "execution.failed", "execution.cancelled"})


class Event(Protocol):
    """One stored event (control_plane.services.exports.LogEvent)."""

    execution_id: str
    seq: int
    event_id: str
    type: str
    step: str | None
    loop_index: int | None
    derived: bool
    occurred_at: datetime
    recorded_at: datetime
    body: dict[str, Any]
    playbook_path: str
    playbook_version: int


class Execution(Protocol):
    """One execution with its events (control_plane.services.exports.ExecutionRecord)."""

    execution_id: str
    playbook_path: str
    playbook_version: int
    status: str
    parent_execution_id: str | None
    parent_step: str | None
    created_at: datetime
    ended_at: datetime | None
    last_seq: int
    events: list[Any]


@dataclass
class Rows:
    """One batch's rows, by table."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in TABLES})

    def counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}


def error_of(body: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, message) of an event's error ('' when it carries none)."""
    error = (body.get("result") or {}).get("error") or (body.get("payload") or {}).get("error")
    if isinstance(error, Mapping):
        return str(error.get("kind") or ""), str(error.get("message") or "")
    if isinstance(error, str):
        return "error", error
    return "", ""


def signature(kind: str, message: str) -> str:
    """An error's signature, as `noetl insights` groups failures by (agents.insights.clusters.signature):
    its kind and the first line of its message with what varies taken out ('' when there is no error)."""
    if not kind and not message:
        return ""
    return error_signature(kind or None, message)[:200]


def event_row(event: Event) -> dict[str, Any]:
    body = event.body
    kind, message = error_of(body)
    return {"event_id": event.event_id, "execution_id": event.execution_id, "seq": event.seq,
            "type": event.type, "step": event.step or "", "loop_index": event.loop_index,
            "command_id": body.get("command_id") or "", "run": body.get("run"),
            "attempt": body.get("attempt"),
            "derived": event.derived, "occurred_at": event.occurred_at, "recorded_at": event.recorded_at,
            "pool": body.get("pool") or "", "worker": body.get("worker") or "",
            "duration_ms": body.get("duration_ms"), "error_kind": kind,
            "error_signature": signature(kind, message) if kind or message else "",
            "playbook_path": event.playbook_path, "playbook_version": event.playbook_version}


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds() * 1000, 3)


def step_run_rows(execution: Execution) -> list[dict[str, Any]]:
    """One row per (command, attempt) of an ended execution: queued (step.scheduled), started
    (step.started, or step.retrying for a later attempt), ended (task.attempt.failed for a failed
    attempt that was retried, else the command's outcome)."""
    commands: dict[str, list[Event]] = {}
    for event in execution.events:
        command_id = event.body.get("command_id")
        if command_id and event.type != "step.dispatched":
            commands.setdefault(command_id, []).append(event)
    rows: list[dict[str, Any]] = []
    for command_id, events in commands.items():
        queued = next((e.occurred_at for e in events if e.type == "step.scheduled"), None)
        attempts: dict[int, dict[str, Any]] = {}

        def attempt_of(number: int, event: Event, attempts: dict[int, dict[str, Any]] = attempts,
                       command_id: str = command_id) -> dict[str, Any]:
            return attempts.setdefault(number, {
                "execution_id": execution.execution_id, "command_id": command_id, "attempt": number,
                "step": event.step or "", "loop_index": event.loop_index, "run": event.body.get("run"),
                "playbook_path": execution.playbook_path, "playbook_version": execution.playbook_version,
                "status": "running", "error_kind": "", "error_signature": "", "pool": "", "worker": "",
                "queued_at": None, "started_at": None, "ended_at": None})

        current = 1
        for event in events:
            body = event.body
            if event.type == "step.scheduled":
                continue
            number = int(body.get("attempt") or current)
            if event.type == "step.started":
                row = attempt_of(1, event)
                row["started_at"] = row["started_at"] or event.occurred_at
            elif event.type == "step.retrying":
                current = number
                row = attempt_of(number, event)
                row["started_at"] = event.occurred_at
            elif event.type == "task.attempt.failed":
                row = attempt_of(number, event)
                kind, message = error_of(body)
                row.update(status="failed", ended_at=event.occurred_at, error_kind=kind,
                           error_signature=signature(kind, message))
            elif event.type in _ENDS:
                row = attempt_of(current, event)
                kind, message = error_of(body)
                ok = event.type.endswith("succeeded") or (event.type == "loop.claimer.stopped" and not kind)
                status = "skipped" if event.type == "step.skipped" else "succeeded" if ok else "failed"
                row.update(status=status, ended_at=event.occurred_at)
                if kind or message:
                    row.update(error_kind=kind, error_signature=signature(kind, message))
            else:
                row = attempt_of(current, event)
            row["pool"] = body.get("pool") or row["pool"]
            row["worker"] = body.get("worker") or row["worker"]
        previous_end = queued
        for number in sorted(attempts):
            row = attempts[number]
            row["queued_at"] = queued if number == 1 else previous_end
            row["run_ms"] = _ms(row["started_at"], row["ended_at"])
            row["queue_ms"] = _ms(row["queued_at"], row["started_at"])
            row["at"] = row["started_at"] or row["queued_at"] or row["ended_at"] or execution.created_at
            previous_end = row["ended_at"]
            rows.append(row)
    return rows


def execution_row(execution: Execution) -> dict[str, Any]:
    started = next((e.occurred_at for e in execution.events if e.type == "execution.started"), None)
    terminal = next((e for e in execution.events if e.type in _TERMINAL), None)
    kind, message = error_of(terminal.body) if terminal is not None else ("", "")
    ended = execution.ended_at
    return {"execution_id": execution.execution_id, "playbook_path": execution.playbook_path,
            "playbook_version": execution.playbook_version, "status": execution.status,
            "parent_execution_id": execution.parent_execution_id or "",
            "parent_step": execution.parent_step or "",
            "created_at": execution.created_at, "started_at": started, "ended_at": ended,
            "duration_ms": _ms(started or execution.created_at, ended), "error_kind": kind,
            "error_signature": signature(kind, message), "step_runs": 0, "events": len(execution.events),
            "last_seq": execution.last_seq}


def batch_rows(events: Sequence[Event], ended: Iterable[Execution]) -> Rows:
    """One batch's rows: its events, and the step runs and rows of the executions that ended in it."""
    rows = Rows()
    rows.tables["events"] = [event_row(e) for e in events]
    for execution in ended:
        runs = step_run_rows(execution)
        row = execution_row(execution)
        row["step_runs"] = len(runs)
        rows.tables["step_runs"].extend(runs)
        rows.tables["executions"].append(row)
    return rows


def ended_in(events: Iterable[Event]) -> list[str]:
    """The executions whose terminal event is among `events` (in first-seen order)."""
    return list(dict.fromkeys(e.execution_id for e in events if e.type in _TERMINAL))
