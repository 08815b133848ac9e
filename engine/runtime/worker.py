"""A worker of one pool: commands from its JetStream work queue -> the step runner -> events back.

A command is acked only after its outcome event is published (JetStream confirmed it); while a step
runs, the worker reports `in_progress` so JetStream does not hand the command to another worker.
A worker killed mid-step never acks: the command is delivered again, run again, and its outcome keeps
the same idempotency key, so the event log records it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from engine.bus.jetstream import Bus, Delivery
from engine.protocol import subjects
from engine.protocol.commands import CancelStep, RunStep
from engine.protocol.events import Event, encode_events
from engine.protocol.workers import HEARTBEAT_S, WorkerHeartbeat
from engine.runtime.step_runner import StepOutcome, StepRunner

log = logging.getLogger(__name__)


@dataclass
class Worker:
    bus: Bus
    runner: StepRunner
    pool: str = "default"
    concurrency: int = 4
    labels: tuple[str, ...] = ()
    capacity: dict[str, float] | None = None  # what this worker adds to its pool; None: cpu = concurrency
    ack_wait_s: float = 30.0
    drain_s: float = 10.0
    _running: dict[str, asyncio.Task[StepOutcome]] = field(default_factory=dict)
    _cancelled: OrderedDict[str, str] = field(default_factory=OrderedDict)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await self.bus.ensure_streams()
        consumer = await self.bus.command_consumer(self.pool, ack_wait_s=self.ack_wait_s,
                                                   max_ack_pending=max(self.concurrency * 4, 64))
        subscription = await self.bus.subscribe_cancel(self._on_cancel)
        pinged = await self.bus.subscribe_core(subjects.worker_ping_subject(self.bus.prefix),
                                               lambda _: self._beat())
        beating = asyncio.create_task(self._heartbeats())
        running: set[asyncio.Task[None]] = set()  # commands in a slot: parsed, or their step running
        settling: set[asyncio.Task[None]] = set()  # ran: outcome being published, command being acked
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                free = self.concurrency - len(running)
                if free <= 0:
                    await asyncio.wait(running, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    continue
                for delivery in await consumer.fetch(batch=free, timeout=0.5):
                    task = asyncio.create_task(self._serve(delivery, settling))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            if running:  # drain: let running steps finish for a while, hand the rest back
                await asyncio.wait(running, timeout=self.drain_s)
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if settling:
                await asyncio.wait(settling, timeout=self.drain_s)
            await subscription.unsubscribe()
            await pinged.unsubscribe()
            beating.cancel()
            with contextlib.suppress(Exception):
                await self._beat(stopping=True)

    def heartbeat(self, *, stopping: bool = False) -> WorkerHeartbeat:
        capacity = self.capacity if self.capacity is not None else {"cpu": float(self.concurrency)}
        return WorkerHeartbeat(worker=self.runner.identity.worker, pool=self.pool, labels=list(self.labels),
                               capacity=capacity, concurrency=self.concurrency, stopping=stopping)

    async def _beat(self, *, stopping: bool = False) -> None:
        await self.bus.publish_core(subjects.worker_subject(self.bus.prefix),
                                    self.heartbeat(stopping=stopping).model_dump_json().encode())

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self._beat()
            except Exception:  # a missed heartbeat only delays dispatch to this worker
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(HEARTBEAT_S)

    async def _on_cancel(self, data: bytes) -> None:
        try:
            cancel = CancelStep.model_validate_json(data)
        except ValueError:
            return
        self._cancelled[cancel.command_id] = cancel.reason
        while len(self._cancelled) > 10_000:
            self._cancelled.popitem(last=False)
        task = self._running.get(cancel.command_id)
        if task is not None:
            task.cancel()

    async def _serve(self, delivery: Delivery, settling: set[asyncio.Task[None]]) -> None:
        """Run the command's step in a slot; its outcome is published and the command acked after the
        slot is given back (`concurrency` bounds the steps running, not the messages being settled)."""
        try:
            try:
                command = RunStep.model_validate_json(delivery.data)
            except ValueError:
                log.error("dropping a malformed command (%d bytes)", len(delivery.data))
                await delivery.term()
                return
            heartbeat = asyncio.create_task(self._heartbeat(delivery))
            try:
                outcome = await self._execute(command, delivery.num_delivered)
            except BaseException:
                heartbeat.cancel()
                raise
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # back to the queue now, not after ack_wait
                await asyncio.shield(delivery.nak())
            raise
        except Exception:  # the command stays unacked and is delivered again
            log.exception("serving a command failed; it will be redelivered")
            return
        task = asyncio.create_task(self._settle(delivery, command, outcome, heartbeat))
        settling.add(task)
        task.add_done_callback(settling.discard)

    async def _settle(self, delivery: Delivery, command: RunStep, outcome: StepOutcome,
                      heartbeat: asyncio.Task[None]) -> None:
        """Publish the outcome (JetStream confirms it), then ack the command: never the other way round."""
        try:
            try:
                await self.bus.publish_event(command.execution_id, outcome.event.idempotency_key,
                                             encode_events(outcome.events))
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            await delivery.ack()
        except Exception:  # the command stays unacked and is delivered again
            log.exception("publishing the outcome of step %s failed; the command will be redelivered",
                          command.step, extra={"execution_id": command.execution_id, "step": command.step})

    async def _execute(self, command: RunStep, delivery: int = 1) -> StepOutcome:
        async def report(event: Event) -> None:
            await self.bus.publish_event(command.execution_id, event.idempotency_key,
                                         event.model_dump_json().encode())

        if command.command_id in self._cancelled:
            return self.runner.cancelled_outcome(command, self._cancelled[command.command_id])
        task = asyncio.create_task(self.runner.run(command, report, delivery=delivery))
        self._running[command.command_id] = task
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled() and command.command_id in self._cancelled:
                return self.runner.cancelled_outcome(command, self._cancelled[command.command_id])
            raise
        finally:
            self._running.pop(command.command_id, None)

    async def _heartbeat(self, delivery: Delivery) -> None:
        interval = max(self.ack_wait_s / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                await delivery.in_progress()
            except Exception:  # a missed heartbeat only risks a redelivery
                log.warning("in_progress heartbeat failed", exc_info=True)
