"""Child executions of `kind: playbook` steps, as the orchestrator handles them (spec 8): starting one,
reporting its end as the parent step's outcome, and cancelling it when its call's deadline passes.

The deadline is in the child's `execution.started` (`call_deadline`), so the timer is armed again
whenever the child is loaded (its start, a rebuild, a resume) for the time that remains. The timers and
the tasks they start live here; `close()` drops them when the orchestrator stops.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.dsl.templates import to_native
from engine.net.state import ExecutionState
from engine.protocol.commands import StartChild
from engine.protocol.events import TERMINAL_EVENTS, Event
from engine.protocol.outcomes import event_key, outcome_event
from engine.protocol.results import ResultEnvelope
from engine.runtime.ports import ChildStarter, EventLog
from engine.tools.artifacts import externalize, json_size

log = logging.getLogger(__name__)

RETRY_S = 0.25  # a timeout's cancel that NATS did not take is tried again after this
INLINE_MAX_BYTES = 65536  # a child's result above this goes to its parent by reference

Replay = Callable[[str, Event, list[Event]], ExecutionState]


class ChildCalls:
    """What the orchestrator does for the playbook calls of the executions it runs."""

    def __init__(self, publish_event: Callable[[Event], Awaitable[None]], events: EventLog,
                 starter: ChildStarter | None, resolve_ref: Callable[[dict[str, Any]], Any] | None,
                 work_dir: Path | None) -> None:
        self._publish_event = publish_event
        self._events = events
        self._starter = starter
        self._resolve_ref = resolve_ref
        self._work_dir = work_dir
        self._timers: dict[str, asyncio.TimerHandle] = {}  # child -> its call's deadline
        self._tasks: set[asyncio.Task[None]] = set()  # what the timers started (kept referenced)

    # ------------------------------------------------------------------ starting and ending
    async def start(self, command: StartChild) -> None:
        """Start the child (again: a no-op when it exists); a call that cannot start fails the step."""
        try:
            if self._starter is None:
                raise LookupError("this orchestrator cannot start child executions")
            await self._starter.start_child(command)
        except LookupError as exc:
            await self._publish_event(outcome_event(
                command.execution_id, command.command_id, command.step, command.loop_index,
                ResultEnvelope.fail("validation", str(exc), retryable=False, source="playbook")))

    async def report_if_ended(self, command: StartChild, replay: Replay) -> None:
        """A resumed parent still waits for a child that has ended: the orchestrator stopped after the
        child's end was stored and before the parent's step heard of it. The child's end is reported
        now (under the same idempotency key as the first time, so it is stored once)."""
        history = await self._events.events(command.child_execution_id)
        terminal = next((e for e in history if e.type in TERMINAL_EVENTS), None)
        started = next((e for e in history if e.type == "execution.started"), None)
        if terminal is None or started is None or not started.payload.get("parent_command_id"):
            return
        log.info("child execution %s ended while no orchestrator reported it; reporting it to its parent",
                 command.child_execution_id, extra={"execution_id": command.execution_id,
                                                    "step": command.step})
        await self.report_end(replay(command.child_execution_id, started, history), dict(started.payload),
                              terminal)

    async def report_end(self, state: ExecutionState, started: dict[str, Any], terminal: Event) -> None:
        """A child execution ended: that is the outcome of the parent's step (spec 8). `started` is the
        child's `execution.started` payload, `state` the child as its log leaves it."""
        if terminal.type == "execution.completed":
            return_step = started.get("return_step")
            record = state.steps.get(return_step) if return_step else None
            result = record.result if record and record.result else (
                state.steps[state.last_finished].result if state.last_finished in state.steps else None)
            data = result.handle(self._resolve_ref) if result is not None else None
            envelope = ResultEnvelope.ok(to_native(data))
            if result is not None and result.ref is not None and not result.item_refs:
                envelope = ResultEnvelope.ok(result.data).model_copy(update={"ref": result.ref})
            elif self._work_dir is not None and json_size(envelope.data) > INLINE_MAX_BYTES:
                inline, ref = externalize(envelope.data, self._work_dir / state.execution_id)
                envelope = envelope.model_copy(update={"data": inline, "ref": ref})
        else:
            error = state.error
            envelope = ResultEnvelope.fail(
                error.kind if error is not None else
                ("cancelled" if terminal.type == "execution.cancelled" else "internal"),
                f"child execution {state.execution_id} ({started.get('path')}) "
                f"{terminal.type.split('.')[1]}: {error.message if error is not None else ''}".strip(),
                retryable=False, source="playbook")
        await self._publish_event(outcome_event(
            str(started["parent_execution_id"]), str(started["parent_command_id"]),
            str(started.get("parent_step")), started.get("parent_loop_index"), envelope))

    # ------------------------------------------------------------------ call timeouts
    def arm_timeout(self, execution_id: str, started: dict[str, Any]) -> None:
        """A child whose call has a timeout is cancelled at the deadline its `execution.started` records
        (at once when it passed): armed whenever the child is loaded, so a restart keeps it."""
        deadline = started.get("call_deadline")
        if not deadline:
            return
        try:
            remaining = (datetime.fromisoformat(str(deadline)) - datetime.now(UTC)).total_seconds()
        except ValueError:
            log.error("the call deadline %r of this child execution is not an ISO timestamp; it has no "
                      "timeout", deadline, extra={"execution_id": execution_id})
            return
        self._arm(execution_id, max(remaining, 0.0), started)

    def disarm(self, execution_id: str) -> None:
        """The child ended: its deadline no longer matters."""
        timer = self._timers.pop(execution_id, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        """The orchestrator stops: its timers go (the next one arms them again from the log)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    def _arm(self, execution_id: str, delay_s: float, started: dict[str, Any]) -> None:
        self.disarm(execution_id)

        def fire_timer() -> None:
            self._timers.pop(execution_id, None)
            task = asyncio.ensure_future(self._timed_out(execution_id, started))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[execution_id] = asyncio.get_running_loop().call_later(delay_s, fire_timer)

    async def _timed_out(self, execution_id: str, started: dict[str, Any]) -> None:
        """Cancel the child whose call timed out (its end fails the parent's step with `timeout`); while
        NATS is away, tried again every RETRY_S. A second cancel is dropped by its key."""
        key = event_key(str(started.get("parent_command_id")), "timeout")
        event = Event(event_id=uuid.uuid4().hex, idempotency_key=key, execution_id=execution_id,
                      type="execution.cancel_requested",
                      payload={"reason": f"the playbook call of step '{started.get('parent_step')}' timed "
                                         f"out after {started.get('call_timeout_s')} s", "timeout": True})
        try:
            await self._publish_event(event)
        except Exception as exc:
            log.warning("cancelling a child execution whose call timed out failed (%s); trying again", exc,
                        extra={"execution_id": execution_id})
            self._arm(execution_id, RETRY_S, started)
