"""An in-memory bus for unit tests: engine.runtime.ports.RuntimeBus without a nats-server.

What it keeps of JetStream (engine/bus/jetstream.py), because the orchestrator and the worker rely on it:

- two streams, as `Bus.ensure_streams` makes them: a command work queue per pool (a message is gone
  once acked or terminated, and goes to one reader of the pool's durable consumer) and an event stream
  (kept; each durable consumer reads all of it, from the first message it has not acked);
- de-duplication by message id: a second publish with an id the stream holds already is dropped and
  answered `duplicate=True` (JetStream's window is 120 s; here it never closes, as no test runs as long);
- delivery in stream order; `ack_nowait`, `nak(delay_s)`, `in_progress` and `term` with their meaning:
  a message not settled within the consumer's ack wait, or nak'ed, is delivered again with
  `num_delivered` one higher (a nak's delay and the ack wait run on the event loop's clock); a command
  consumer delivers a message at most `max_deliver` (5) times and holds at most `max_ack_pending`
  unsettled messages; a settlement of a message that is settled already is ignored, as by the server;
- core NATS: `publish_core` hands the data to every subscriber of exactly that subject (no wildcards)
  in a task of its own, at most once, nothing stored; a callback that raises is logged and forgotten;
- workers' reports (engine/bus/reports.py): `report` hands the data to the open event reader (an
  orchestrator's `event_reader`), which reads them before the event stream's messages; settling one
  answers it (ack: ok, nak: retry:<delay>, term: drop); with no reader open the answer is `absent`, unless
  `answer_reports` is set: then every report is answered with it at once (a stand-in orchestrator for
  tests of a worker alone).

Left out: the connection (it never drops unless a test says so, see `fail_publishes`), stream limits,
payload sizes, the pull credit of engine/bus/pull.py. A fetch that waits returns when a message is
published, a nak's delay or an ack wait ends, its timeout passes, or `wake()` is called (a test that
stops a runtime calls it, so that a fetch waiting for its timeout ends at once).

For the tests to read: `commands`, `events`, `reports` (data, attempt) and `core` record every publish
(and whether the stream dropped it as a duplicate); each durable consumer (`FakeReader.durable`, or
`bus.command_stream.consumers["pool-default"]`) records every settlement in `settled` as (ack | nak |
wpi | term, message id, num_delivered), and `pending()` counts what it has not delivered or not had
acked yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from engine.bus.jetstream import BusError, PublishResult, stream_names
from engine.bus.reports import ABSENT, DROP, OK, retry_answer
from engine.protocol import subjects
from engine.protocol.partitions import ALL_PARTITIONS, partition_of

log = logging.getLogger(__name__)

DataCallback = Callable[[bytes], Awaitable[None]]


@dataclass(eq=False)
class Stored:
    """A message in a stream."""

    seq: int
    subject: str
    msg_id: str
    data: bytes


@dataclass(eq=False)
class _Unsettled:
    """A message of a durable consumer that is not settled yet, and when it may go (again)."""

    message: Stored
    delivered: int = 0  # times delivered so far
    due: float = 0.0  # loop time from which it may be delivered (again): ack wait or nak delay over
    out: bool = False  # delivered and neither settled nor given back: an ack is awaited


class FakeStream:
    """A JetStream stream: messages by sequence, de-duplicated by message id."""

    def __init__(self, name: str, work_queue: bool) -> None:
        self.name = name
        self.work_queue = work_queue
        self.messages: dict[int, Stored] = {}
        self.last_seq = 0
        self._ids: dict[str, int] = {}
        self.consumers: dict[str, FakeDurable] = {}

    def publish(self, subject: str, msg_id: str, data: bytes) -> PublishResult:
        if msg_id in self._ids:
            return PublishResult(stream=self.name, seq=self._ids[msg_id], duplicate=True)
        self.last_seq += 1
        self._ids[msg_id] = self.last_seq
        self.messages[self.last_seq] = Stored(self.last_seq, subject, msg_id, data)
        for consumer in self.consumers.values():
            consumer.wake()
        return PublishResult(stream=self.name, seq=self.last_seq, duplicate=False)


class FakeDurable:
    """The server's side of one durable pull consumer: what it delivered, what waits to go (again)."""

    def __init__(self, stream: FakeStream, subject: str, *, ack_wait_s: float, max_deliver: int,
                 max_ack_pending: int | None) -> None:
        self.stream = stream
        self.subject = subject  # exact, or a prefix ending in '>'
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.max_ack_pending = max_ack_pending
        self.next_seq = 1  # the first stream sequence not looked at yet
        self.unsettled: dict[int, _Unsettled] = {}  # by stream sequence
        self.settled: list[tuple[str, str, int]] = []  # (ack|nak|wpi|term, msg id, num_delivered)
        self.exhausted: list[str] = []  # msg ids no longer delivered: max_deliver reached
        self._signal = asyncio.Event()
        self._interrupted = False

    def _matches(self, subject: str) -> bool:
        if self.subject.endswith(">"):
            return subject.startswith(self.subject[:-1])
        return subject == self.subject

    def wake(self) -> None:
        self._signal.set()

    def interrupt(self) -> None:
        """End the fetches that wait now, with what is ready (maybe nothing)."""
        self._interrupted = True
        self._signal.set()

    def _take_in(self) -> None:
        """The messages published since the last look, of this consumer's subjects."""
        while self.next_seq <= self.stream.last_seq:
            message = self.stream.messages.get(self.next_seq)
            if message is not None and self._matches(message.subject):
                self.unsettled[message.seq] = _Unsettled(message)
            self.next_seq += 1

    def _ready(self, now: float, batch: int) -> list[_Unsettled]:
        """What may be delivered now, in stream order: new messages, those given back whose delay is
        over, and those whose ack wait ran out; new ones only while fewer than max_ack_pending wait
        for an ack."""
        self._take_in()
        awaited = sum(1 for u in self.unsettled.values() if u.delivered)
        ready = []
        for seq in sorted(self.unsettled):
            pending = self.unsettled[seq]
            if pending.due > now:
                continue
            if 0 <= self.max_deliver <= pending.delivered:
                del self.unsettled[seq]
                self.exhausted.append(pending.message.msg_id)
                continue
            if not pending.delivered:
                if self.max_ack_pending is not None and awaited >= self.max_ack_pending:
                    continue
                awaited += 1
            ready.append(pending)
            if len(ready) == batch:
                break
        return ready

    def _next_due(self, now: float) -> float | None:
        return min((u.due for u in self.unsettled.values() if u.due > now), default=None)

    async def fetch(self, batch: int, timeout: float) -> list[FakeDelivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._interrupted = False
        while True:
            now = loop.time()
            ready = self._ready(now, max(1, batch))
            if ready or now >= deadline:
                break
            next_due = self._next_due(now)
            until = deadline if next_due is None else min(deadline, next_due)
            self._signal.clear()  # no await since `_ready` looked: no wake-up is lost
            try:
                await asyncio.wait_for(self._signal.wait(), max(until - now, 0))
            except TimeoutError:
                pass
            if self._interrupted:
                now = loop.time()
                ready = self._ready(now, max(1, batch))
                break
        deliveries = []
        for pending in ready:
            pending.delivered += 1
            pending.out = True
            pending.due = now + self.ack_wait_s
            deliveries.append(FakeDelivery(self, pending.message, pending.delivered))
        return deliveries

    def settle(self, delivery: FakeDelivery, action: str, delay_s: float | None = None) -> None:
        pending = self.unsettled.get(delivery.stream_seq)
        if pending is None or not pending.out:  # settled or given back already: the server ignores it
            return
        self.settled.append((action, delivery.msg_id, delivery.num_delivered))
        now = asyncio.get_running_loop().time()
        if action in ("ack", "term"):
            del self.unsettled[delivery.stream_seq]
            if self.stream.work_queue:  # a work queue forgets what was acked
                self.stream.messages.pop(delivery.stream_seq, None)
        elif action == "nak":
            pending.out = False
            pending.due = now + (delay_s or 0.0)
            self.wake()
        elif action == "wpi":
            pending.due = now + self.ack_wait_s

    def pending(self) -> int:
        """Messages not delivered yet, plus those delivered and not acked or terminated."""
        self._take_in()
        return len(self.unsettled)


class FakeDelivery:
    """One delivery of a message (engine.runtime.ports.Message)."""

    def __init__(self, durable: FakeDurable, message: Stored, num_delivered: int) -> None:
        self._durable = durable
        self._message = message
        self.num_delivered = num_delivered

    @property
    def data(self) -> bytes:
        return self._message.data

    @property
    def subject(self) -> str:
        return self._message.subject

    @property
    def msg_id(self) -> str:
        return self._message.msg_id

    @property
    def stream_seq(self) -> int:
        return self._message.seq

    async def ack(self) -> None:
        self._durable.settle(self, "ack")

    async def ack_nowait(self) -> None:
        self._durable.settle(self, "ack")

    async def nak(self, delay_s: float | None = None) -> None:
        self._durable.settle(self, "nak", delay_s)

    async def in_progress(self) -> None:
        self._durable.settle(self, "wpi")

    async def term(self) -> None:
        self._durable.settle(self, "term")


class FakeReport:
    """One report as an orchestrator reads it (engine.runtime.ports.Message): settling it answers."""

    def __init__(self, data: bytes, attempt: int, answer: asyncio.Future[str]) -> None:
        self.data = data
        self.num_delivered = attempt
        self._answer = answer

    def _settle(self, answer: str) -> None:
        if not self._answer.done():
            self._answer.set_result(answer)

    async def ack_nowait(self) -> None:
        self._settle(OK)

    async def nak(self, delay_s: float | None = None) -> None:
        self._settle(retry_answer(delay_s or 0.0))

    async def in_progress(self) -> None:
        return None

    async def term(self) -> None:
        self._settle(DROP)


class FakeEventReader:
    """An orchestrator's reader (engine.runtime.ports.EventReader): reports first, then the stream."""

    def __init__(self, bus: FakeBus, stream: FakeReader, partitions: Iterable[int]) -> None:
        self._bus = bus
        self._stream = stream
        self.inbox: deque[FakeReport] = deque()
        self._partitions = set(partitions)

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions whose reports come here (the stream is read whole: the unit tests' orchestrator
        owns every partition)."""
        return frozenset(self._partitions)

    async def adopt(self, partitions: Iterable[int]) -> None:
        self._partitions.update(partitions)

    async def release(self, partitions: Iterable[int]) -> None:
        self._partitions.difference_update(partitions)

    def arrived(self) -> None:
        self._stream.durable.interrupt()  # a fetch waiting on the stream returns, and takes the report

    @property
    def reports_waiting(self) -> int:
        return len(self.inbox)

    def _take(self, batch: int) -> list[FakeReport]:
        return [self.inbox.popleft() for _ in range(min(batch, len(self.inbox)))]

    async def fetch(self, batch: int = 1, timeout: float = 5.0) -> list[FakeReport | FakeDelivery]:
        found: list[FakeReport | FakeDelivery] = list(self._take(batch))
        if len(found) < batch:  # no await between the look at the inbox and the fetch: no lost wake-up
            found.extend(await self._stream.fetch(batch - len(found), 0 if found else timeout))
        if not found:
            found.extend(self._take(batch))
        return found

    async def close(self) -> None:
        if self._bus.reader is self:
            self._bus.reader = None
        while self.inbox:
            await self.inbox.popleft().nak(0.25)


class FakeReader:
    """A reader of a durable consumer (engine.runtime.ports.Reader); several readers share its work."""

    def __init__(self, bus: FakeBus, durable: FakeDurable) -> None:
        self._bus = bus
        self.durable = durable

    async def fetch(self, batch: int = 1, timeout: float = 5.0) -> list[FakeDelivery]:
        if self._bus.closed:
            raise BusError("the fake bus is closed", transient=True)
        return await self.durable.fetch(batch, timeout)

    async def close(self) -> None:
        return None


@dataclass
class _CoreSubscription:
    bus: FakeBus
    subject: str
    callback: DataCallback
    active: bool = True

    async def unsubscribe(self) -> None:
        self.active = False


@dataclass
class FakeBus:
    """engine.runtime.ports.RuntimeBus in memory (see the module's docstring for what it models)."""

    prefix: str = subjects.PREFIX
    # what the streams were offered: (pool or execution id, msg id, data, dropped as a duplicate)
    commands: list[tuple[str, str, bytes, bool]] = field(default_factory=list)
    events: list[tuple[str, str, bytes, bool]] = field(default_factory=list)
    core: list[tuple[str, bytes]] = field(default_factory=list)  # subject, data
    reports: list[tuple[bytes, int]] = field(default_factory=list)  # data, attempt
    answer_reports: str | None = None  # answer every report with this at once (no orchestrator needed)
    reader: FakeEventReader | None = None  # the open event reader: it takes the reports
    fail_publishes: int = 0  # the next this many stream publishes fail as when NATS is away
    closed: bool = False

    def __post_init__(self) -> None:
        command_stream, event_stream = stream_names(self.prefix)
        self.command_stream = FakeStream(command_stream, work_queue=True)
        self.event_stream = FakeStream(event_stream, work_queue=False)
        self._subscriptions: list[_CoreSubscription] = []
        self._reconnected: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ streams and consumers
    async def ensure_streams(self) -> None:
        return None

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnected.append(callback)

    def reconnected(self) -> None:
        """As when the connection came back after a loss: every on_reconnect callback is called."""
        for callback in self._reconnected:
            callback()

    def _durable(self, stream: FakeStream, name: str, subject: str, *, ack_wait_s: float, max_deliver: int,
                 max_ack_pending: int | None) -> FakeDurable:
        durable = stream.consumers.get(name)
        if durable is None:
            durable = FakeDurable(stream, subject, ack_wait_s=ack_wait_s,
                                  max_deliver=max_deliver, max_ack_pending=max_ack_pending)
            stream.consumers[name] = durable
        return durable

    async def event_consumer(self, durable: str, *, ack_wait_s: float = 30.0, max_deliver: int = -1,
                             max_ack_pending: int | None = None) -> FakeReader:
        return FakeReader(self, self._durable(
            self.event_stream, durable, subjects.event_subjects(self.prefix), ack_wait_s=ack_wait_s,
            max_deliver=max_deliver, max_ack_pending=max_ack_pending))

    async def event_reader(self, durable: str, *, ack_wait_s: float = 30.0,
                           partitions: Iterable[int] = ALL_PARTITIONS) -> FakeEventReader:
        self.reader = FakeEventReader(self, await self.event_consumer(durable, ack_wait_s=ack_wait_s),
                                      partitions)
        return self.reader

    async def round_trip(self) -> None:
        await asyncio.sleep(0)  # nothing is in flight in memory: one turn of the loop

    async def report(self, data: bytes, *, execution_id: str, attempt: int = 1) -> asyncio.Future[str]:
        partition = partition_of(execution_id)
        self._refuse(subjects.report_subject(partition, self.prefix))
        self.reports.append((data, attempt))
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self.answer_reports is not None:
            answer.set_result(self.answer_reports)
        elif self.reader is None or partition not in self.reader.partitions:
            answer.set_result(ABSENT)
        else:
            self.reader.inbox.append(FakeReport(data, attempt, answer))
            self.reader.arrived()
        return answer

    async def command_consumer(self, pool: str, *, ack_wait_s: float = 30.0, max_deliver: int = 5,
                               max_ack_pending: int | None = None) -> FakeReader:
        return FakeReader(self, self._durable(
            self.command_stream, f"pool-{pool}", subjects.command_subject(pool, self.prefix),
            ack_wait_s=ack_wait_s, max_deliver=max_deliver, max_ack_pending=max_ack_pending))

    def wake(self) -> None:
        """End every fetch that waits now (it returns what is ready, maybe nothing)."""
        for stream in (self.command_stream, self.event_stream):
            for durable in stream.consumers.values():
                durable.interrupt()

    # ------------------------------------------------------------------ publishing
    def _refuse(self, subject: str) -> None:
        if self.closed:
            raise BusError("the fake bus is closed", where=subject, transient=True)
        if self.fail_publishes > 0:
            self.fail_publishes -= 1
            raise BusError("publish was not acknowledged (fake outage)", where=subject, transient=True)

    async def publish_command(self, pool: str, msg_id: str, data: bytes) -> PublishResult:
        subject = subjects.command_subject(pool, self.prefix)
        self._refuse(subject)
        if not msg_id:
            raise BusError("a message id is required (JetStream de-duplicates by it)", where=subject)
        result = self.command_stream.publish(subject, msg_id, data)
        self.commands.append((pool, msg_id, data, result.duplicate))
        return result

    async def publish_event(self, execution_id: str, msg_id: str, data: bytes) -> PublishResult:
        subject = subjects.event_subject(execution_id, self.prefix)
        self._refuse(subject)
        if not msg_id:
            raise BusError("a message id is required (JetStream de-duplicates by it)", where=subject)
        result = self.event_stream.publish(subject, msg_id, data)
        self.events.append((execution_id, msg_id, data, result.duplicate))
        return result

    # ------------------------------------------------------------------ core NATS
    async def publish_core(self, subject: str, data: bytes) -> None:
        if self.closed:
            raise BusError("the fake bus is closed", where=subject, transient=True)
        self.core.append((subject, data))
        for subscription in list(self._subscriptions):
            if subscription.active and subscription.subject == subject:
                task = asyncio.get_running_loop().create_task(self._deliver(subscription, data))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def publish_core_nowait(self, subject: str, data: bytes) -> None:
        await self.publish_core(subject, data)

    @staticmethod
    async def _deliver(subscription: _CoreSubscription, data: bytes) -> None:
        try:
            await subscription.callback(data)
        except Exception:
            log.exception("callback for %s failed", subscription.subject)

    async def subscribe_core(self, subject: str, callback: DataCallback,
                             queue: str = "") -> _CoreSubscription:
        subscription = _CoreSubscription(self, subject, callback)
        self._subscriptions.append(subscription)
        return subscription

    async def publish_cancel(self, data: bytes) -> None:
        await self.publish_core(subjects.cancel_subject(self.prefix), data)

    async def subscribe_cancel(self, callback: DataCallback) -> _CoreSubscription:
        return await self.subscribe_core(subjects.cancel_subject(self.prefix), callback)

    # ------------------------------------------------------------------ closing
    async def quiesce(self) -> None:
        """Wait for the core deliveries still running."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Refuse further use (BusError, as a closed connection does)."""
        self.closed = True
        self.wake()
        await self.quiesce()
