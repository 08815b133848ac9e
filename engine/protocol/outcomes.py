"""What a command's outcome event is called and keyed by: shared by the worker that reports it and the
orchestrator that reports it in the worker's place (a step that never ran, a child execution's end), so
both write the same event for the same command and the log stores it once."""

from __future__ import annotations

import uuid

from engine.protocol.events import Event, EventType
from engine.protocol.results import ResultEnvelope

__all__ = ["event_key", "outcome_event", "outcome_key", "outcome_type"]


def event_key(command_id: str, what: str) -> str:
    """The idempotency key of one event about a command (`what`: "outcome", "started:1", ...)."""
    return f"{command_id}:{what}"


def outcome_key(command_id: str) -> str:
    """The idempotency key of a command's outcome: one per command, whoever reports it."""
    return event_key(command_id, "outcome")


def outcome_type(ok: bool, loop_index: int | None, *, claimer: bool = False) -> EventType:
    """step.succeeded|failed, loop.item.succeeded|failed for a loop item, loop.claimer.stopped for a
    cursor loop's claimer (spec 6.1)."""
    if claimer:
        return "loop.claimer.stopped"
    if loop_index is None:
        return "step.succeeded" if ok else "step.failed"
    return "loop.item.succeeded" if ok else "loop.item.failed"


def outcome_event(execution_id: str, command_id: str, step: str, loop_index: int | None,
                  envelope: ResultEnvelope, *, claimer: bool = False) -> Event:
    """A command's outcome as the orchestrator reports it when no worker will (never dispatched,
    cancelled before it ran, a child execution's end)."""
    return Event(event_id=uuid.uuid4().hex, idempotency_key=outcome_key(command_id),
                 execution_id=execution_id, step=step, command_id=command_id, loop_index=loop_index,
                 type=outcome_type(envelope.status == "ok", loop_index, claimer=claimer), result=envelope)
