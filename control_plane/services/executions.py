"""Starting, following and cancelling executions: validate -> catalog -> execution row -> started event."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.services.catalog import CatalogService, PlaybookInvalidError, Registered
from control_plane.store import Store
from engine.bus.jetstream import Bus
from engine.protocol.commands import StartChild
from engine.protocol.events import TERMINAL_EVENTS, Event
from engine.runtime.summary import summarize

OnEvent = Callable[[Event], Awaitable[None] | None]


class ExecutionService:
    def __init__(self, store: Store, bus: Bus, *, resolve_ref: Callable[[dict[str, Any]], Any] | None = None
                 ) -> None:
        self.store = store
        self.bus = bus
        self.resolve_ref = resolve_ref

    async def register(self, text: str, file: str = "<playbook>") -> Registered:
        return await CatalogService(self.store).register(text, file)

    async def start(self, path: str, *, version: int | None = None, payload: dict[str, Any] | None = None,
                    parent_execution_id: str | None = None, parent_step: str | None = None,
                    execution_id: str | None = None, parent: dict[str, Any] | None = None) -> str:
        """Start an execution of a catalog entry; returns its id at once (the orchestrator runs it).

        `parent` (for a child execution) carries the parent's command id, loop index and return step.
        """
        if payload is not None and not isinstance(payload, dict):
            raise InvalidArgumentError(f"the payload must be a JSON object, got {type(payload).__name__}",
                                       where="payload", fix='pass an object such as {"x": 1}')
        entry = await self.store.catalog.get(path, version)
        execution_id = execution_id or uuid.uuid4().hex
        await self.store.events.create_execution(
            execution_id, playbook_path=entry.path, playbook_version=entry.version,
            playbook_text=entry.text, payload=payload or {}, parent_execution_id=parent_execution_id,
            parent_step=parent_step)
        started = Event(event_id=uuid.uuid4().hex, idempotency_key=f"{execution_id}:started",
                        execution_id=execution_id, type="execution.started",
                        payload={"playbook": entry.text, "path": entry.path, "version": entry.version,
                                 "payload": payload or {}, "parent_execution_id": parent_execution_id,
                                 "parent_step": parent_step, **(parent or {})})
        await self.bus.publish_event(execution_id, started.idempotency_key,
                                     started.model_dump_json().encode())
        return execution_id

    async def start_child(self, command: StartChild) -> None:
        """The orchestrator's ChildStarter: a `kind: playbook` step's child execution."""
        try:
            await self.start(command.path, version=command.version, payload=command.input,
                             parent_execution_id=command.execution_id, parent_step=command.step,
                             execution_id=command.child_execution_id,
                             parent={"parent_command_id": command.command_id,
                                     "parent_loop_index": command.loop_index,
                                     "return_step": command.return_step})
        except NotFoundError as exc:
            version = f" version {command.version}" if command.version else ""
            raise LookupError(f"step '{command.step}': no playbook '{command.path}'{version} in the "
                              f"catalog ({exc.message}); register it with `noetl register FILE`") from None

    async def cancel(self, execution_id: str, reason: str = "cancelled on request") -> None:
        await self.store.executions.get(execution_id)  # NotFoundError for an unknown id
        event = Event(event_id=uuid.uuid4().hex, idempotency_key=f"{execution_id}:cancel:{uuid.uuid4().hex}",
                      execution_id=execution_id, type="execution.cancel_requested",
                      payload={"reason": reason})
        await self.bus.publish_event(execution_id, event.idempotency_key, event.model_dump_json().encode())
        for child in await self.children(execution_id):
            await self.cancel(child, f"parent execution {execution_id} was cancelled")

    async def children(self, execution_id: str) -> list[str]:
        page = await self.store.executions.list(parent_execution_id=execution_id, limit=1000)
        return [item.execution_id for item in page.items]

    async def summary(self, execution_id: str) -> dict[str, Any]:
        await self.store.executions.get(execution_id)
        return summarize(execution_id, await self.store.events.events(execution_id), self.resolve_ref)

    async def wait(self, execution_id: str, *, timeout_s: float | None = None,
                   on_event: OnEvent | None = None, poll_s: float = 0.02) -> dict[str, Any]:
        """Follow the event log until a terminal event; returns the summary."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seq = 0
        history: list[Event] = []
        while True:
            batch = await self.store.events.events(execution_id, after_seq=seq)
            for event in batch:
                seq = max(seq, event.seq or seq)
                history.append(event)
                if on_event is not None:
                    maybe = on_event(event)
                    if asyncio.iscoroutine(maybe):
                        await maybe
            if any(e.type in TERMINAL_EVENTS for e in batch):
                return summarize(execution_id, history, self.resolve_ref)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} did not finish within {timeout_s} s")
            await asyncio.sleep(poll_s)


__all__ = ["ExecutionService", "NotFoundError", "PlaybookInvalidError", "Registered"]
