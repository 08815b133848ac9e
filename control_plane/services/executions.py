"""Starting, following and cancelling executions: validate -> catalog -> execution row -> started event."""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from control_plane.errors import ConflictError, InvalidArgumentError, NotFoundError
from control_plane.services.catalog import CatalogService, PlaybookInvalidError, Registered
from control_plane.services.policies import active_overlays
from control_plane.store import Store
from control_plane.store.executions import Execution, ExecutionPage
from control_plane.store.notifications import EventNotifications
from engine.bus.jetstream import Bus
from engine.protocol.commands import StartChild
from engine.protocol.events import TERMINAL_EVENTS, Event
from engine.protocol.ids import new_execution_id
from engine.protocol.tracecontext import trace_id_for
from engine.runtime.summary import summarize

log = logging.getLogger(__name__)

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ID_ATTEMPTS = 5  # new ids tried when one is taken already
FIRST_POLL_S = 0.005  # a follower without notifications reads again this soon after events came
OnEvent = Callable[[Event], Awaitable[None] | None]


class ExecutionService:
    def __init__(self, store: Store, bus: Bus, *, resolve_ref: Callable[[dict[str, Any]], Any] | None = None,
                 notifications: EventNotifications | None = None) -> None:
        self.store = store
        self.bus = bus
        self.resolve_ref = resolve_ref
        self.notifications = notifications  # LISTEN wake-ups for followers; None: poll

    async def register(self, text: str, file: str = "<playbook>") -> Registered:
        return await CatalogService(self.store).register(text, file)

    async def start(self, path: str, *, version: int | None = None, payload: dict[str, Any] | None = None,
                    parent_execution_id: str | None = None, parent_step: str | None = None,
                    execution_id: str | None = None, parent: dict[str, Any] | None = None,
                    origin: dict[str, Any] | None = None) -> str:
        """Start an execution of a catalog entry; returns its id at once (the orchestrator runs it).

        `parent` (for a child execution) carries the parent's command id, loop index and return step.
        With `execution_id` given (a new one from engine.protocol.ids, or a child's), starting again after
        a failure is safe: the row is created once and the started event is published under the same key.
        `origin` goes into the started event as it is (a trigger's firing: `{"trigger": {...}}`).
        """
        if payload is not None and not isinstance(payload, dict):
            raise InvalidArgumentError(f"the payload must be a JSON object, got {type(payload).__name__}",
                                       where="payload", fix='pass an object such as {"x": 1}')
        entry = await self.store.catalog.get(path, version)
        overlays = await active_overlays(self.store, entry.path)  # approved changes: docs/policies.md
        fields: dict[str, Any] = dict(
            playbook_path=entry.path, playbook_version=entry.version, playbook_text=entry.text,
            payload=payload or {}, parent_execution_id=parent_execution_id, parent_step=parent_step)
        if execution_id is not None:  # a child's (fire derived it) or a retried start's: created once
            await self.store.events.create_execution(execution_id, **fields)
        else:
            execution_id = await self._create_new(fields)
        started = Event(event_id=uuid.uuid4().hex, idempotency_key=f"{execution_id}:started",
                        execution_id=execution_id, type="execution.started",
                        payload={"playbook": entry.text, "path": entry.path, "version": entry.version,
                                 "payload": payload or {}, "parent_execution_id": parent_execution_id,
                                 "parent_step": parent_step, **(parent or {}),
                                 # the execution's trace (docs/insights.md "Tracing"): derived, so the
                                 # same whoever records or replays it
                                 "trace_id": trace_id_for(execution_id), **(origin or {}),
                                 **({"overlays": overlays} if overlays else {})})
        await self.bus.publish_event(execution_id, started.idempotency_key,
                                     started.model_dump_json().encode())
        if overlays:
            applied = Event(event_id=uuid.uuid4().hex, idempotency_key=f"{execution_id}:policy.applied",
                            execution_id=execution_id, type="policy.applied", payload=overlays)
            await self.bus.publish_event(execution_id, applied.idempotency_key,
                                         applied.model_dump_json().encode())
        return execution_id

    async def _create_new(self, fields: dict[str, Any]) -> str:
        """Create the row under a new id (engine.protocol.ids). Ids made at the same millisecond by two
        processes share their low 22 random bits once in about four million: that id is stored already,
        so another is taken."""
        for _ in range(ID_ATTEMPTS):
            execution_id = new_execution_id()
            try:
                if await self.store.events.create_execution(execution_id, **fields):
                    return execution_id
            except ConflictError:
                pass
            log.warning("execution id %s was taken already; taking another", execution_id)
        raise ConflictError(f"{ID_ATTEMPTS} new execution ids in a row were taken already",
                            where="executions.start",
                            fix="check the clocks of the machines that start executions")

    async def start_child(self, command: StartChild) -> None:
        """The orchestrator's ChildStarter: a `kind: playbook` step's child execution. Its
        `execution.started` records the call's deadline (`call_deadline`, from the call's `timeout`) and
        the parent's shared keychain entries; when the child was started before, the first one stands."""
        parent: dict[str, Any] = {"parent_command_id": command.command_id,
                                  "parent_loop_index": command.loop_index, "return_step": command.return_step}
        if command.timeout_s:
            deadline = datetime.now(UTC) + timedelta(seconds=command.timeout_s)
            parent.update(call_timeout_s=command.timeout_s, call_deadline=deadline.isoformat())
        if command.keychain:
            parent["keychain"] = command.keychain
        try:
            await self.start(command.path, version=command.version, payload=command.input,
                             parent_execution_id=command.execution_id, parent_step=command.step,
                             execution_id=command.child_execution_id, parent=parent)
        except NotFoundError as exc:
            version = f" version {command.version}" if command.version else ""
            raise LookupError(f"step '{command.step}': no playbook '{command.path}'{version} in the "
                              f"catalog ({exc.message}); register it with `noetl register FILE`") from None
        except ConflictError as exc:  # its id is another execution's (engine.protocol.ids)
            raise LookupError(f"step '{command.step}': the child execution {command.child_execution_id} "
                              f"could not be started: {exc.message}; run the step again") from None

    async def cancel(self, execution_id: str, reason: str = "cancelled on request") -> None:
        """Ask the orchestrator to cancel the execution and its children; ConflictError once it ended."""
        execution = await self.store.executions.get(execution_id)  # NotFoundError for an unknown id
        if execution.ended_at is not None:
            raise ConflictError(f"execution '{execution_id}' already ended ({execution.status})",
                                where="executions.cancel", fix="only a running execution can be cancelled")
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

    async def get(self, execution_id: str) -> Execution:
        return await self.store.executions.get(execution_id)

    async def list(self, *, path: str | None = None, status: str | Sequence[str] | None = None,
                   since: datetime | None = None, until: datetime | None = None,
                   parent_execution_id: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> ExecutionPage:
        """Newest first; `since` inclusive, `until` exclusive; pass `next_cursor` back for the next page."""
        if status is not None:
            for value in [status] if isinstance(status, str) else status:
                if value not in STATUSES:
                    raise InvalidArgumentError(f"unknown execution status '{value}'", where="status",
                                               fix=f"one of {', '.join(STATUSES)}")
        return await self.store.executions.list(
            path=path, status=status, created_after=since, created_before=until,
            parent_execution_id=parent_execution_id, limit=limit, cursor=cursor)

    async def events(self, execution_id: str, *, after_seq: int = 0,
                     limit: int = 100) -> builtins.list[Event]:
        """A page of the execution's events with seq > after_seq, in order."""
        if not 1 <= limit <= 1000:
            raise InvalidArgumentError(f"limit {limit} is out of range", where="events",
                                       fix="pass a limit from 1 to 1000")
        if after_seq < 0:
            raise InvalidArgumentError(f"after_seq {after_seq} is negative", where="events",
                                       fix="pass 0 for the first page, then the last seq you read")
        await self.store.executions.get(execution_id)
        return await self.store.events.events(execution_id, after_seq=after_seq, limit=limit)

    async def follow(self, execution_id: str, *, after_seq: int = 0, poll_s: float = 0.02,
                     idle_s: float = 1.0) -> AsyncGenerator[Event, None]:
        """Every event with seq > after_seq as it is stored; ends after the terminal event.

        Woken by the store's notifications when there are any (re-reading at least every `idle_s`),
        else polling: FIRST_POLL_S after events came, doubling while none come, up to `poll_s` (a short
        step's next events are read within milliseconds, a long one's cost a query per `poll_s`).
        """
        await self.store.executions.get(execution_id)
        seq = after_seq
        pause = min(FIRST_POLL_S, poll_s)
        while True:
            batch = await self.store.events.events(execution_id, after_seq=seq, limit=1000)
            for event in batch:
                seq = max(seq, event.seq or seq)
                yield event
                if event.type in TERMINAL_EVENTS:
                    return
            if len(batch) == 1000:
                continue
            if self.notifications is not None:
                await self.notifications.wait(execution_id, idle_s)
            else:
                if batch:
                    pause = min(FIRST_POLL_S, poll_s)
                await asyncio.sleep(pause)
                pause = min(pause * 2, poll_s)

    async def wait(self, execution_id: str, *, timeout_s: float | None = None,
                   on_event: OnEvent | None = None, poll_s: float = 0.02,
                   history: builtins.list[Event] | None = None) -> dict[str, Any]:
        """Follow the event log until a terminal event; returns the summary.

        `history` holds the events followed so far: the wait appends to it and, given a non-empty one
        (a wait interrupted by an outage), goes on after its last event."""
        history = [] if history is None else history
        after_seq = max((event.seq or 0 for event in history), default=0)

        async def collect() -> None:
            async for event in self.follow(execution_id, after_seq=after_seq, poll_s=poll_s):
                history.append(event)
                if on_event is not None:
                    maybe = on_event(event)
                    if asyncio.iscoroutine(maybe):
                        await maybe

        try:
            await asyncio.wait_for(collect(), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"execution {execution_id} did not finish within {timeout_s} s") from None
        return summarize(execution_id, history, self.resolve_ref)


__all__ = ["ExecutionService", "NotFoundError", "PlaybookInvalidError", "Registered"]
