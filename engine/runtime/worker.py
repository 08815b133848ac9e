"""A worker of one pool: commands from its JetStream work queue -> the step runner -> outcomes back.

A message carries one command, or several of one pool (a batch the orchestrator packed, see
`engine.protocol.commands.encode_runs`). It is acked only after the outcomes of all its commands are
stored: an outcome goes to the orchestrator as a report (a core NATS request, engine/bus/reports.py)
that the orchestrator answers once the outcome is committed to the event log; until then the worker
keeps it and sends it again, to whichever orchestrator leads by then (the log keeps each idempotency key
once). While its steps run and their outcomes wait for an answer, the worker reports `in_progress` so
JetStream does not hand the message to another worker. A worker killed before the answer never acks:
the message is delivered again, its commands run again, and their outcomes keep the same idempotency
keys, so the event log records each once.

Progress events (a slow step's `step.started`, retries) go on the event stream while the step runs; the
step's report carries them again ahead of its outcome, so the log never holds an outcome before them.
A cursor loop's claimer reports everything on the event stream (its rows' outcomes are stored there
before it claims again, and its end may overtake them: `fire` waits for them).

Outcomes that are ready at the same time go back together: one report per execution carries all of
them (`encode_events`). A command delivered again after this worker's outcome was stored (an
orchestrator re-sent it after a rebuild, in another batch than before, so JetStream's message-id check
could not drop it) is acked without running again, and its outcome, kept while memory allows, is sent
again. A copy of a command that is running or waiting here is acked and dropped.

While NATS or the orchestrator is away, fetches are tried again and finished outcomes are offered again
for up to OUTCOME_RETRY_S; the client reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import types
from collections import OrderedDict, deque
from collections.abc import Awaitable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

from engine.bus.jetstream import BusError
from engine.bus.reports import ABSENT, DROP, OK, retry_delay
from engine.protocol import subjects
from engine.protocol.commands import CancelStep, RunStep, decode_runs
from engine.protocol.events import Event, derived_id, encode_events, join_events
from engine.protocol.packing import pack
from engine.protocol.workers import HEARTBEAT_S, WorkerHeartbeat
from engine.runtime.ports import Message, RuntimeBus
from engine.runtime.step_runner import StepOutcome, StepRunner

log = logging.getLogger(__name__)

OUTCOMES_MAX_BYTES = 256 * 1024  # outcomes packed into one event message up to this size
RECONNECT_POLL_S = 0.25  # after a failed fetch or publish (NATS away), before the next try
OUTCOME_RETRY_S = 600.0  # how long finished steps' outcomes are offered before the message is given back
REPORT_WAIT_S = 2.0  # an unanswered report is sent again after this (doubling up to REPORT_WAIT_MAX_S):
REPORT_WAIT_MAX_S = 16.0  # the orchestrator that took it may have died
OUTCOMES_KEPT_BYTES = 16 * 1024 * 1024  # published outcomes kept to offer again (NATS lost them)
# messages held unacked at once: running, and finished with their outcomes waiting for the commit
MIN_ACK_PENDING = 256
PUBLISHED_KEPT = 10_000  # ids of commands whose outcome this worker published, to not run them twice
# an ack waits this long for company (the next report, other acks), to leave in one socket write with it
ACK_HOLD_S = 0.002


class _Message:
    """A delivered message and how many of its commands are not settled yet."""

    __slots__ = ("beaten", "delivery", "every", "failed", "num_delivered", "received", "unsettled")

    def __init__(self, delivery: Message, commands: int, every: float | None = None) -> None:
        self.delivery = delivery
        self.num_delivered = delivery.num_delivered  # read once: nats-py parses it from the subject
        self.unsettled = commands
        self.failed = False
        self.received = self.beaten = time.monotonic()
        self.every = every  # a cursor loop's claimer: its frame's heartbeat interval (spec 6.1)


@dataclass(slots=True)
class _Ran:
    message: _Message
    command: RunStep
    outcome: StepOutcome
    events: list[Event]  # the outcome's events, after the step's progress events
    data: bytes  # `events`, encoded


@dataclass
class Worker:
    bus: RuntimeBus
    runner: StepRunner
    pool: str = "default"
    concurrency: int = 4
    labels: tuple[str, ...] = ()
    capacity: dict[str, float] | None = None  # what this worker adds to its pool; None: cpu = concurrency
    ack_wait_s: float = 30.0
    drain_s: float = 10.0
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # command id -> its task
    _cancelled: OrderedDict[str, str] = field(default_factory=OrderedDict)
    # commands whose outcome is stored -> (execution id, message id, the outcome's bytes) while kept
    _published: OrderedDict[str, tuple[str, str, bytes] | None] = field(default_factory=OrderedDict)
    _progress: dict[str, list[Event]] = field(default_factory=dict)  # running: progress events sent
    _kept_bytes: int = 0
    _finishing: set[str] = field(default_factory=set)  # ran: their outcomes wait to be published
    _messages: set[_Message] = field(default_factory=set)  # delivered, not yet settled
    _outbox: list[_Ran] = field(default_factory=list)
    _sending: asyncio.Task[None] | None = None
    _reporting: set[asyncio.Task[None]] = field(default_factory=set)  # outcomes waiting to be stored
    _chores: set[asyncio.Task[None]] = field(default_factory=set)  # acks on their way (held: not collected)
    _acks: list[Message] = field(default_factory=list)  # deliveries to ack, held up to ACK_HOLD_S
    _acks_due: asyncio.TimerHandle | None = None
    _abandoned: set[str] = field(default_factory=set)  # stopping: steps still running after the drain

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self._abandoned.clear()  # a worker run again takes its steps as new
        await self.bus.ensure_streams()
        consumer = await self.bus.command_consumer(self.pool, ack_wait_s=self.ack_wait_s,
                                                   max_ack_pending=max(self.concurrency * 4, MIN_ACK_PENDING))
        subscription = await self.bus.subscribe_cancel(self._on_cancel)
        pinged = await self.bus.subscribe_core(subjects.worker_ping_subject(self.bus.prefix),
                                               lambda _: self._beat())
        beating = asyncio.create_task(self._heartbeats())
        progress = asyncio.create_task(self._in_progress())
        running: set[asyncio.Task[None]] = set()  # commands in a slot: their step running
        backlog: deque[tuple[RunStep, _Message]] = deque()  # delivered in a batch, waiting for a slot
        held: set[str] = set()  # the ids of the commands in `backlog`
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                free = self.concurrency - len(running)
                if free <= 0:
                    await asyncio.wait(running, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if not backlog:
                    try:
                        deliveries = await consumer.fetch(batch=free, timeout=0.5)
                    except BusError as exc:  # NATS is away: the client reconnects by itself
                        log.warning("fetching commands failed (%s); trying again", exc)
                        await asyncio.sleep(RECONNECT_POLL_S)
                        continue
                    for delivery in deliveries:
                        self._receive(delivery, backlog, held)
                while backlog and len(running) < self.concurrency:
                    command, message = backlog.popleft()
                    held.discard(command.command_id)
                    task = asyncio.create_task(self._serve(command, message))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            if running:  # drain: let running steps finish for a while, hand the rest back
                await asyncio.wait(running, timeout=self.drain_s)
            self._abandoned.update(self._running)  # their cancellation is this stop, not a CancelStep
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for message in {message for _, message in backlog}:
                await self._give_back(message)
            if self._sending is not None:
                await asyncio.wait([self._sending], timeout=self.drain_s)
            if self._reporting:  # outcomes not stored yet: their messages come again if they never are
                await asyncio.wait(self._reporting, timeout=self.drain_s)
                for task in list(self._reporting):
                    task.cancel()
                await asyncio.gather(*self._reporting, return_exceptions=True)
            self._send_acks()
            await subscription.unsubscribe()
            await pinged.unsubscribe()
            beating.cancel()
            progress.cancel()
            with contextlib.suppress(Exception):
                await self._beat(stopping=True)

    def _receive(self, delivery: Message, backlog: deque[tuple[RunStep, _Message]],
                 held: set[str]) -> None:
        """Take a delivered message's commands into `backlog` (`held`: the ids of those there already)."""
        try:
            commands = decode_runs(delivery.data)
        except ValueError:
            log.error("dropping a malformed command message (%d bytes)", len(delivery.data))
            self._later(delivery.term())
            return
        fresh = []
        for command in commands:
            if command.command_id in self._published:  # sent again (an orchestrator rebuild): its outcome
                self._resend(command)                  # is out, and may be what NATS lost: offered again
            elif command.command_id not in self._running and command.command_id not in held \
                    and command.command_id not in self._finishing:  # ran, its outcome on its way
                fresh.append(command)
        if not fresh:  # every command of it ran or runs here: the copy is not needed
            self._ack(delivery)
            return
        heartbeats = [max(c.cursor.heartbeat_s, 0.2)  # a cursor loop's claimers
                      for c in fresh if c.cursor is not None]
        message = _Message(delivery, len(fresh), min(heartbeats) if heartbeats else None)
        self._messages.add(message)
        backlog.extend((command, message) for command in fresh)
        held.update(command.command_id for command in fresh)

    def _ack(self, delivery: Message) -> None:
        """Ack a delivery, unconfirmed (a lost ack only means the message comes again), with the next
        report or within ACK_HOLD_S: a chain's ack then leaves in the same write as the next step's
        report, not in one of its own (each write wakes nats-server)."""
        self._acks.append(delivery)
        if self._acks_due is None:
            self._acks_due = asyncio.get_running_loop().call_later(ACK_HOLD_S, self._send_acks)

    def _send_acks(self) -> None:
        """Publish the acks held (queued on the connection at once: nats-py needs no wait for that)."""
        if self._acks_due is not None:
            self._acks_due.cancel()
            self._acks_due = None
        acks, self._acks = self._acks, []
        for delivery in acks:
            acking = delivery.ack_nowait()
            try:
                yielded = acking.send(None)
            except StopIteration:
                continue
            except Exception:  # as in `_later`: the message comes again
                continue
            self._later(_resumed(acking, yielded))

    def _later(self, settling: Awaitable[None]) -> None:
        """Settle a message without waiting for it (its failure only means it comes again)."""
        task = asyncio.ensure_future(_quietly(settling))
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

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

    async def _serve(self, command: RunStep, message: _Message) -> None:
        """Run one command's step in a slot; its outcome joins the outbox, published after the slot is
        given back (`concurrency` bounds the steps running, not the messages being settled)."""
        try:
            outcome = await self._execute(command, message.num_delivered)
            if command.command_id in self._abandoned and command.command_id not in self._cancelled:
                await self._give_back(message)  # this worker stops: another runs the step, not "cancelled"
                return
            if command.cursor is not None and command.command_id not in self._cancelled \
                    and outcome.event.payload.get("cursor", {}).get("reason") == "cancelled":
                await self._give_back(message)  # this worker stops: another takes the claimer over
                return
            events = self._with_progress(command, outcome.events)
            data = encode_events(events)
        except asyncio.CancelledError:
            await self._give_back(message)  # back to the queue now, not after ack_wait
            raise
        except Exception:  # the message stays unacked and is delivered again
            log.exception("serving a command failed; it will be redelivered",
                          extra={"execution_id": command.execution_id, "step": command.step})
            self._settle(message, ok=False)
            return
        finally:
            self._progress.pop(command.command_id, None)
        self._outbox.append(_Ran(message, command, outcome, events, data))
        self._finishing.add(command.command_id)
        if self._sending is None:
            self._sending = asyncio.create_task(self._send_outbox())

    def _with_progress(self, command: RunStep, events: list[Event]) -> list[Event]:
        """The outcome's events after the step's progress events (already on the event stream, which the
        orchestrator may read after the report): the log keeps the first copy of each."""
        progress = self._progress.get(command.command_id)  # never kept for a cursor claimer (`report`)
        if not progress:
            return events
        keys = {event.idempotency_key for event in events}
        return [*(event for event in progress if event.idempotency_key not in keys), *events]

    async def _send_outbox(self) -> None:
        """Send what is in the outbox, an execution's outcomes together; what arrives meanwhile goes
        with the next round."""
        try:
            while self._outbox:
                self._send_acks()  # in the same write as this round's first report
                ran, self._outbox = self._outbox, []
                groups: dict[tuple[str, bool], list[_Ran]] = {}
                for item in ran:  # a claimer's end goes on the event stream, behind its rows
                    key = (item.command.execution_id, item.command.cursor is not None)
                    groups.setdefault(key, []).append(item)
                for group in groups.values():
                    for chunk in pack(group, lambda item: len(item.data), max_items=len(group),
                                      max_bytes=OUTCOMES_MAX_BYTES):
                        # sent now, in order; the answer comes after the commit, and outcomes that finish
                        # meanwhile must not wait for it: it is awaited in a task of its own
                        msg_id, data = self._encoded(chunk)
                        sent = await self._send(chunk, data)
                        task = asyncio.create_task(self._publish(chunk, msg_id, data, sent))
                        self._reporting.add(task)
                        task.add_done_callback(self._reporting.discard)
                # what finishes while the server takes these goes with the next round, together (as when
                # each round waited for JetStream's confirmation): a loop's outcomes travel in a few large
                # reports, not one each; a lone outcome (a chain) goes at once all the same
                with contextlib.suppress(BusError):
                    await self.bus.round_trip()
        finally:
            self._sending = None

    @staticmethod
    def _encoded(chunk: list[_Ran]) -> tuple[str, bytes]:
        """(message id, data) of a chunk of outcomes of one execution."""
        first = chunk[0]
        if len(chunk) == 1:
            return first.outcome.event.idempotency_key, first.data
        return ("outcomes:" + derived_id(*(item.outcome.event.idempotency_key for item in chunk)),
                join_events([item.data for item in chunk]))

    async def _send(self, chunk: list[_Ran], data: bytes) -> asyncio.Future[str] | None:
        """A chunk's first report, sent now (None for a claimer's end, or when NATS is away)."""
        if chunk[0].command.cursor is not None:
            return None
        try:
            return await self.bus.report(data, execution_id=chunk[0].command.execution_id)
        except BusError:
            return None  # sent again by `_deliver`

    async def _publish(self, chunk: list[_Ran], msg_id: str, data: bytes,
                       sent: asyncio.Future[str] | None = None) -> None:
        """Send the outcomes (`sent`: the first report is out already) and wait until they are stored,
        then ack: never the other way round."""
        first = chunk[0]
        execution_id = first.command.execution_id
        try:
            if first.command.cursor is not None:
                await self._publish_patiently(execution_id, msg_id, data)
            else:
                await self._deliver(execution_id, data, sent)
        except Exception:  # the commands stay unacked and are delivered again
            self._finishing.difference_update(item.command.command_id for item in chunk)
            log.exception("publishing %d outcome(s) of execution %s failed; the command(s) will be "
                          "redelivered", len(chunk), execution_id,
                          extra={"execution_id": execution_id, "step": first.command.step})
            for item in chunk:
                self._settle(item.message, ok=False)
            return
        for item in chunk:
            self._remember(item.command, item.outcome.event.idempotency_key, item.data)
            self._finishing.discard(item.command.command_id)
            self._settle(item.message, ok=True)

    def _remember(self, command: RunStep, key: str, data: bytes) -> None:
        """A published outcome, kept (up to OUTCOMES_KEPT_BYTES in all) to be offered again if the
        command comes again; beyond that only its id, so the step is still not run twice."""
        self._published[command.command_id] = (command.execution_id, key, data)
        self._kept_bytes += len(data)
        while len(self._published) > PUBLISHED_KEPT:
            _, dropped = self._published.popitem(last=False)
            self._kept_bytes -= len(dropped[2]) if dropped else 0
        if self._kept_bytes > OUTCOMES_KEPT_BYTES:
            for command_id, kept in self._published.items():
                if kept is not None:
                    self._published[command_id] = None
                    self._kept_bytes -= len(kept[2])
                    if self._kept_bytes <= OUTCOMES_KEPT_BYTES // 2:
                        break

    def _resend(self, command: RunStep) -> None:
        kept = self._published.get(command.command_id)
        if kept is not None:
            execution_id, key, data = kept
            self._later(self._publish_patiently(execution_id, key, data) if command.cursor is not None
                        else self._deliver(execution_id, data))

    async def _deliver(self, execution_id: str, data: bytes,
                       sent: asyncio.Future[str] | None = None) -> None:
        """Report outcomes to the orchestrator and return once they are stored: sent again while no
        orchestrator answers (none leads, or the one that took them died) or it asks to, for up to
        OUTCOME_RETRY_S: the step ran, and running it again would only repeat its side effects. `sent`:
        the answer to the first report, sent already."""
        deadline = time.monotonic() + OUTCOME_RETRY_S
        backoff, patience = RECONNECT_POLL_S, REPORT_WAIT_S
        attempt = 1
        while True:
            wait = 0.0
            try:
                if sent is None:
                    sent = await self.bus.report(data, execution_id=execution_id, attempt=attempt)
                answer = await asyncio.wait_for(sent, patience)
            except TimeoutError:  # taken by an orchestrator that did not answer in time: again
                answer = None
                patience = min(patience * 2, REPORT_WAIT_MAX_S)
            except BusError as exc:
                if not exc.transient:
                    raise
                answer = ABSENT  # NATS is away: the client reconnects by itself
            if answer in (OK, DROP):
                return
            delay = retry_delay(answer) if answer is not None else None
            if delay is not None:
                wait = delay
            elif answer == ABSENT:
                wait, backoff = backoff, min(backoff * 2, 2.0)
                log.info("no orchestrator took the outcomes of execution %s; sending them again in %.2f s",
                         execution_id, wait, extra={"execution_id": execution_id})
            elif answer is not None:
                raise BusError(f"the orchestrator answered a report with {answer!r}",
                               where="the outcome report", fix="run the same NoETL version everywhere")
            sent = None
            if time.monotonic() + wait > deadline:
                raise BusError(f"no orchestrator stored the outcomes of execution {execution_id} within "
                               f"{OUTCOME_RETRY_S:.0f} s", where="the outcome report", transient=True,
                               fix="start the orchestrator (noetl server start); the steps run again")
            if wait > 0:
                await asyncio.sleep(wait)
            attempt += 1

    async def _publish_patiently(self, execution_id: str, msg_id: str, data: bytes) -> None:
        """Publish outcomes, again and again while NATS is away (restarting, reconnecting) for up to
        OUTCOME_RETRY_S: the step ran, and running it again would only repeat its side effects. The same
        message id each time, so JetStream stores it once."""
        deadline = time.monotonic() + OUTCOME_RETRY_S
        wait = RECONNECT_POLL_S
        while True:
            try:
                await self.bus.publish_event(execution_id, msg_id, data)
                return
            except BusError as exc:
                if not exc.transient or time.monotonic() + wait > deadline:
                    raise
                log.warning("publishing outcomes of execution %s failed (%s); trying again in %.2f s",
                            execution_id, exc, wait, extra={"execution_id": execution_id})
            await asyncio.sleep(wait)
            wait = min(wait * 2, 2.0)

    def _settle(self, message: _Message, *, ok: bool) -> None:
        message.unsettled -= 1
        message.failed = message.failed or not ok
        if message.unsettled > 0:
            return
        self._messages.discard(message)
        if not message.failed:
            self._ack(message.delivery)

    async def _give_back(self, message: _Message) -> None:
        message.failed = True  # whatever of it still settles must not ack it
        if message in self._messages:
            self._messages.discard(message)
            with contextlib.suppress(Exception):
                await asyncio.shield(message.delivery.nak())

    async def _execute(self, command: RunStep, delivery: int = 1) -> StepOutcome:
        """Run the command in the calling task (a CancelStep cancels that task: the runner turns the
        cancellation into the step's `cancelled` outcome)."""
        async def report(event: Event) -> None:
            await self.bus.publish_event(command.execution_id, event.idempotency_key,
                                         event.model_dump_json().encode())
            if command.cursor is None:  # sent again ahead of the outcome (`_with_progress`)
                self._progress.setdefault(command.command_id, []).append(event)

        if command.command_id in self._cancelled:
            return self.runner.cancelled_outcome(command, self._cancelled[command.command_id])
        task = asyncio.current_task()
        assert task is not None
        self._running[command.command_id] = task
        try:
            return await self.runner.run(command, report, delivery=delivery)
        finally:
            self._running.pop(command.command_id, None)

    async def _in_progress(self) -> None:
        """Every message held longer than a third of ack_wait tells the server it is still worked on; a
        cursor loop's claimer does so every frame.heartbeat_seconds when that is sooner."""
        base = max(self.ack_wait_s / 3, 0.2)
        while True:
            # a claimer that arrives during a longer sleep gets its first beat within base (< ack_wait)
            await asyncio.sleep(min([base] + [m.every for m in self._messages if m.every is not None]))
            now = time.monotonic()
            for message in list(self._messages):
                every = base if message.every is None else min(base, message.every)
                if now - message.beaten >= every - 0.01:
                    message.beaten = now
                    try:
                        await message.delivery.in_progress()
                    except Exception:  # a missed heartbeat only risks a redelivery
                        log.warning("in_progress heartbeat failed", exc_info=True)


@types.coroutine
def _continued(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Drive on a coroutine that was started outside a task and first waited for `yielded`: what it
    waits for passes through to the task that runs this, what the task sends or throws (a
    cancellation) passes back to it."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown in by the task: a cancellation
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return


async def _resumed(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    await _continued(coro, yielded)


async def _quietly(settling: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await settling
