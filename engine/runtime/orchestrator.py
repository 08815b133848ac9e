"""The orchestrator: events from the bus -> Postgres event log -> fire -> commands to worker pools.

An event is taken as happened when it is committed to the event log, never when JetStream acks it:
each batch is folded through `fire`, the input events and every derived event are appended in one
transaction, the commands are published, and only then are the bus messages acked. A restarted
orchestrator rebuilds each running execution by replaying its input events and re-publishes the
commands still pending (JetStream drops the ones it already has, by message id).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.bus.jetstream import Bus, Delivery
from engine.dsl.templates import TemplateRenderer
from engine.errors import EngineError
from engine.net.fire import FireEnv, fire
from engine.net.net import Net
from engine.net.state import ExecutionState
from engine.net.validate import validate_text
from engine.protocol.commands import CancelStep, RunStep
from engine.protocol.events import INPUT_EVENTS, TERMINAL_EVENTS, Event
from engine.runtime.ports import EventLog

log = logging.getLogger(__name__)


class OrchestratorError(EngineError):
    code = "orchestrator_error"


@dataclass
class _Execution:
    net: Net
    state: ExecutionState
    env: FireEnv
    issued: dict[str, RunStep] = field(default_factory=dict)  # from replay: pending ones are re-sent


@dataclass
class Orchestrator:
    bus: Bus
    events: EventLog
    resolve_ref: Callable[[dict[str, Any]], Any] | None = None
    batch_size: int = 256
    ack_wait_s: float = 30.0
    durable: str = "orchestrator"
    _live: dict[str, _Execution] = field(default_factory=dict)
    _nets: dict[str, Net] = field(default_factory=dict)
    _renderer: TemplateRenderer = field(default_factory=TemplateRenderer)

    # ------------------------------------------------------------------ life cycle
    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await self.bus.ensure_streams()
        consumer = await self.bus.event_consumer(self.durable, ack_wait_s=self.ack_wait_s)
        await self.resume()
        if ready is not None:
            ready.set()
        while not stop.is_set():
            deliveries = await consumer.fetch(batch=self.batch_size, timeout=0.5)
            if deliveries:
                await self.handle(deliveries)

    async def resume(self) -> None:
        """Rebuild every execution that has no terminal event and re-publish its pending commands."""
        for execution_id in await self.events.active_executions():
            try:
                execution = await self._load(execution_id)
            except Exception:  # one broken execution must not stop the others
                log.exception("cannot resume execution", extra={"execution_id": execution_id})
                continue
            if execution is None:
                continue
            pending = [execution.issued[c] for c in execution.state.pending if c in execution.issued]
            if pending:
                log.info("resuming execution with %d pending commands", len(pending),
                         extra={"execution_id": execution_id})
            for command in pending:
                await self._publish(command)
            execution.issued.clear()

    # ------------------------------------------------------------------ handling
    async def handle(self, deliveries: list[Delivery]) -> None:
        to_append: list[Event] = []
        to_publish: list[RunStep | CancelStep] = []
        touched: set[str] = set()
        poison: list[Delivery] = []
        for delivery in deliveries:
            try:
                event = Event.model_validate_json(delivery.data)
            except ValueError:
                log.error("dropping a malformed event message (%d bytes)", len(delivery.data))
                poison.append(delivery)
                continue
            to_append.append(event)
            if event.type not in INPUT_EVENTS:
                continue
            execution = self._live.get(event.execution_id)
            if execution is None:
                execution = await self._load(event.execution_id, first=event)
            if execution is None:
                continue
            touched.add(event.execution_id)
            decision = fire(execution.net, execution.state, event, execution.env)
            to_append.extend(decision.events)
            to_publish.extend(decision.commands)
        try:
            await self.events.append(to_append)
        except Exception:
            for execution_id in touched:  # the log is the truth: rebuild these from it next time
                self._live.pop(execution_id, None)
            log.exception("appending %d events failed; the batch will be redelivered", len(to_append))
            for delivery in deliveries:
                await delivery.nak(delay_s=1.0)
            return
        for command in to_publish:
            await self._publish(command)
        for event in to_append:
            if event.type in TERMINAL_EVENTS:
                await self.events.set_status(event.execution_id, event.type.split(".")[1])
                self._live.pop(event.execution_id, None)
        for delivery in deliveries:
            await delivery.ack()
        for delivery in poison:
            await delivery.term()

    async def _publish(self, command: RunStep | CancelStep) -> None:
        data = command.model_dump_json().encode()
        if isinstance(command, RunStep):
            await self.bus.publish_command(command.pool, command.command_id, data)
        else:
            await self.bus.publish_cancel(data)

    # ------------------------------------------------------------------ loading
    def _net(self, text: str) -> Net:
        key = hashlib.sha256(text.encode()).hexdigest()
        net = self._nets.get(key)
        if net is None:
            result = validate_text(text, "<execution playbook>")
            if result.net is None:
                messages = "; ".join(d.format() for d in result.errors[:5])
                raise OrchestratorError(f"the execution's playbook does not validate: {messages}")
            net = result.net
            self._nets[key] = net
        return net

    async def _load(self, execution_id: str, first: Event | None = None) -> _Execution | None:
        """The execution rebuilt from its log (or started from `first` when the log is empty)."""
        history = await self.events.events(execution_id)
        started = next((e for e in history if e.type == "execution.started"), None)
        if started is None and first is not None and first.type == "execution.started":
            started = first
        if started is None:
            log.warning("an event arrived for an unknown execution; ignoring it",
                        extra={"execution_id": execution_id})
            return None
        if any(e.type in TERMINAL_EVENTS for e in history):
            return None
        net = self._net(str(started.payload.get("playbook", "")))
        env = FireEnv(renderer=self._renderer, resolve_ref=self.resolve_ref,
                      playbook_path=started.payload.get("path"))
        execution = _Execution(net, ExecutionState(execution_id), env)
        for event in history:
            if event.type in INPUT_EVENTS:
                for command in fire(net, execution.state, event, env).commands:
                    if isinstance(command, RunStep):
                        execution.issued[command.command_id] = command
        self._live[execution_id] = execution
        return execution
