"""Events: every state change of an execution (spec section 15), the log every feature builds on."""

from __future__ import annotations

import hashlib
import os
import random
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter

from engine.protocol.results import ResultEnvelope, WireModel

EventType = Literal[
    "execution.started", "execution.cancel_requested", "step.scheduled", "step.started",
    "task.attempt.failed", "step.retrying", "step.succeeded", "step.failed", "step.skipped",
    "loop.started", "loop.item.succeeded", "loop.item.failed", "loop.completed", "ctx.updated",
    "execution.completed", "execution.failed", "execution.cancelled", "policy.applied",
    "step.deferred", "step.dispatched", "loop.claimer.stopped",
]
# events that come from outside the orchestrator's decisions; replay folds exactly these
INPUT_EVENTS = frozenset({
    "execution.started", "execution.cancel_requested", "step.started", "task.attempt.failed",
    "step.retrying", "step.succeeded", "step.failed", "loop.item.succeeded", "loop.item.failed",
    "loop.claimer.stopped",
})
TERMINAL_EVENTS = frozenset({"execution.completed", "execution.failed", "execution.cancelled"})


def claim_key(cursor: dict[str, Any]) -> tuple[float, int, int, str, int, int]:
    """Where a cursor loop's row stands in claim order (spec 6.1), from its item event's
    `payload.cursor`: when it was claimed, then by whom (claimer, delivery, claimer run), which claim
    and which row of it. The same events give the same order, whatever order they were folded in."""
    return (float(cursor.get("at") or 0.0), int(cursor.get("claimer") or 0), int(cursor.get("delivery") or 1),
            str(cursor.get("run") or ""), int(cursor.get("claim") or 0), int(cursor.get("row") or 0))


def ends_command(event: Event) -> bool:
    """Whether the event is the outcome of its command: a cursor loop's rows are reported by their
    claimer's command as it goes, and only `loop.claimer.stopped` ends it."""
    return event.type in _COMMAND_OUTCOMES and not (event.type[5:9] == "item" and "cursor" in event.payload)


_COMMAND_OUTCOMES = frozenset({"step.succeeded", "step.failed", "loop.item.succeeded", "loop.item.failed",
                               "loop.claimer.stopped"})


def random_event_id() -> str:
    """A random event id in `uuid.uuid4().hex`'s form (32 hex digits, version 4) at a fifth of its cost
    (the worker makes two per step): from a generator seeded by the OS, not a system call each. An event
    id only names an event (the idempotency key is what deduplicates), and is no secret."""
    bits = _IDS.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET
    return f"{bits:032x}"


_IDS = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's ids
    os.register_at_fork(after_in_child=lambda: _IDS.seed(os.urandom(32)))
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62))  # the version nibble, the variant's two bits
_UUID4_SET = (0x4 << 76) | (0x2 << 62)  # version 4, variant RFC 4122


def derived_id(*parts: object) -> str:
    """A deterministic id: the same decision on replay gets the same id (and is deduplicated)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:32]


class Event(WireModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    idempotency_key: str
    execution_id: str
    type: EventType
    derived: bool = False  # decided by the orchestrator (True) or reported to it (False)
    step: str | None = None
    command_id: str | None = None
    run: int | None = None  # which run of the step (cycles run a step again)
    attempt: int | None = None
    loop_index: int | None = None
    worker: str | None = None
    pool: str | None = None
    duration_ms: float | None = None
    result: ResultEnvelope | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    seq: int | None = None  # position in the execution's log, assigned by the store


def encode_events(events: list[Event]) -> bytes:
    """One bus message: a single event as an object, several (a fast step's start and outcome) as an
    array in the order they happened."""
    if len(events) == 1:
        return events[0].model_dump_json().encode()
    return b"[" + b",".join(e.model_dump_json().encode() for e in events) + b"]"


def join_events(encoded: list[bytes]) -> bytes:
    """One bus message of the events of several messages made by `encode_events`, in their order: the
    same bytes as `encode_events` of all their events, without encoding any of them again."""
    if len(encoded) == 1:
        return encoded[0]
    return b"[" + b",".join(data[1:-1] if data[:1] == b"[" else data for data in encoded) + b"]"


def decode_events(data: bytes) -> list[Event]:
    """The events of one bus message (see `encode_events`); ValueError when it is not one."""
    if data[:1] == b"[":
        return _EVENT_LIST.validate_json(data)
    return [Event.model_validate_json(data)]


_EVENT_LIST: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
