"""An in-memory event log for unit tests: engine.runtime.ports.EventLog without Postgres.

What it keeps of the Postgres store (control_plane/store/events.py and its `noetl_append_events`),
because the orchestrator and the commit pipeline rely on it:

- an append is all or nothing: an event of an execution that was never created fails the whole batch
  (NotFoundError), as does an append while `refuse` is set (a test's stand-in for a Postgres that is
  away or refuses writes);
- idempotency keys are unique across the log: an event whose key is stored already, or came earlier
  in the same batch, is skipped; the rest are numbered 1, 2, 3, ... per execution in batch order;
- the execution's status follows its events: `running` on `execution.started`, the first terminal
  event's outcome (and its end) on a terminal event; `active_executions` are those not ended, oldest
  first; `create_execution` is idempotent for the same playbook and parent, ConflictError otherwise.

`appends` records the size of every append that reached it (group commit shows as few, large ones).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from control_plane.errors import ConflictError, InvalidArgumentError, NotFoundError
from engine.protocol.events import TERMINAL_EVENTS, Event
from engine.runtime.partitions import Fence


@dataclass
class FakeExecution:
    """An execution row (engine.runtime.ports.ExecutionRecord and what the store keeps beside it)."""

    execution_id: str
    playbook_path: str
    playbook_version: int
    playbook_text: str
    payload: dict[str, Any]
    parent_execution_id: str | None = None
    parent_step: str | None = None
    status: str = "pending"
    ended: bool = False
    events: list[Event] = field(default_factory=list)


class FakeEventLog:
    """engine.runtime.ports.EventLog in memory (see the module's docstring for what it models)."""

    def __init__(self) -> None:
        self.executions: dict[str, FakeExecution] = {}
        self._keys: set[str] = set()
        self.appends: list[int] = []  # the number of events handed to each append that was tried
        self.refuse: Exception | None = None  # while set, every append raises it and stores nothing
        self.hold: asyncio.Event | None = None  # while set and not yet set(), appends wait for it
        self.entered = asyncio.Event()  # set when an append starts (to see one is under way)

    async def append(self, events: Sequence[Event]) -> list[Event]:
        self.appends.append(len(events))
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse is not None:
            raise self.refuse
        missing = sorted({e.execution_id for e in events} - set(self.executions))
        if missing:
            raise NotFoundError(f"cannot append events to unknown execution(s) {', '.join(missing)}",
                                where="events.append",
                                fix="create the execution (create_execution) before its events")
        stored = []
        for event in events:
            if event.idempotency_key in self._keys:
                continue
            self._keys.add(event.idempotency_key)
            execution = self.executions[event.execution_id]
            event = event.model_copy(update={"seq": len(execution.events) + 1})
            execution.events.append(event)
            stored.append(event)
            if not execution.ended and event.type in TERMINAL_EVENTS:
                execution.ended, execution.status = True, event.type.split(".")[1]
            elif execution.status == "pending" and event.type == "execution.started":
                execution.status = "running"
        return stored

    async def record(self, events: Sequence[Event], *, fence: Fence | None = None) -> int:
        """(A fence is not checked here: the unit tests' orchestrator owns every partition without leases.)"""
        return len(await self.append(events))

    async def events(self, execution_id: str, *, after_seq: int = 0,
                     limit: int | None = None) -> list[Event]:
        execution = self.executions.get(execution_id)
        found = [e for e in execution.events if (e.seq or 0) > after_seq] if execution else []
        return found if limit is None else found[:limit]

    async def create_execution(self, execution_id: str, *, playbook_path: str, playbook_version: int,
                               playbook_text: str, payload: Mapping[str, Any],
                               parent_execution_id: str | None = None,
                               parent_step: str | None = None) -> bool:
        existing = self.executions.get(execution_id)
        if existing is not None:
            if (existing.playbook_path, existing.playbook_version, existing.parent_execution_id,
                    existing.parent_step) != (playbook_path, playbook_version, parent_execution_id,
                                              parent_step):
                raise ConflictError(f"execution '{execution_id}' already exists for {existing.playbook_path} "
                                    f"v{existing.playbook_version}", where="executions",
                                    fix="use a new execution id for a new run")
            return False
        if parent_execution_id is not None and parent_execution_id not in self.executions:
            raise NotFoundError(f"parent execution '{parent_execution_id}' is not stored",
                                where=f"execution {execution_id}",
                                fix="create the parent execution first, or pass parent_execution_id=None")
        self.executions[execution_id] = FakeExecution(
            execution_id, playbook_path, playbook_version, playbook_text, dict(payload),
            parent_execution_id, parent_step)
        return True

    async def set_status(self, execution_id: str, status: str) -> None:
        if not status:
            raise InvalidArgumentError("an execution status cannot be empty",
                                       where=f"execution {execution_id}",
                                       fix="pass e.g. running, completed, failed or cancelled")
        if execution_id not in self.executions:
            raise NotFoundError(f"execution '{execution_id}' is not stored", where="executions",
                                fix="check the id")
        self.executions[execution_id].status = status

    async def active_executions(self) -> list[str]:
        return [x.execution_id for x in self.executions.values() if not x.ended]  # dicts keep creation order

    # ------------------------------------------------------------------ for the tests
    def types(self, execution_id: str) -> list[tuple[str, str | None]]:
        """(type, step) of the execution's stored events, in log order."""
        execution = self.executions.get(execution_id)
        return [(e.type, e.step) for e in execution.events] if execution else []
