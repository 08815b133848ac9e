"""The bus over NATS JetStream: a work-queue command stream, an event stream, confirmed acks, cancels."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import ParseResult, SplitResult, urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    Header,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from engine.bus import trigger_subjects
from engine.bus.cluster import REPLICA_REFUSALS, check_replicas, default_replicas, server_list, server_name
from engine.bus.event_reader import EventReader
from engine.bus.pull import PullFeed
from engine.bus.reports import ReportInbox, ReportLine
from engine.errors import EngineError
from engine.protocol import subjects
from engine.protocol.partitions import ALL_PARTITIONS, partition_of

logger = logging.getLogger(__name__)

__all__ = ["Bus", "BusError", "Consumer", "CoreSubscription", "Delivery", "EventReader", "Failover",
           "PublishResult", "stream_names"]

ENSURE_STREAMS_WITHIN_S = 20.0  # how long creating the streams is tried while JetStream does not answer
DUPLICATE_WINDOW_S = 120.0  # JetStream drops a second message with the same Nats-Msg-Id within this window
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_NAME_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
_STREAM_CONFIG_MISMATCH = 10058  # "stream name already in use with a different configuration"

DataCallback = Callable[[bytes], Awaitable[None]]


class BusError(EngineError):
    """The bus could not connect, publish, consume or acknowledge. `transient`: NATS did not answer
    (down, restarting, reconnecting) and the same call may succeed later; else the request itself was
    refused (too large, a bad subject) and repeating it cannot help."""

    code = "bus_error"

    def __init__(self, message: str, *, transient: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient


def _host_port(url: str | ParseResult | SplitResult) -> str:
    """`host:port` of a server URL, without its credentials (for logs)."""
    split = urlsplit(url) if isinstance(url, str) else url
    return f"{split.hostname or '?'}:{split.port or 4222}"


def _without_credentials(url: str) -> str:
    """A server URL as given, less any user and password (for messages that name it)."""
    split = urlsplit(url)
    return f"{split.scheme}://{_host_port(split)}" if split.scheme else _host_port(split)


def _with_replicas(config: StreamConfig, replicas: int) -> StreamConfig:
    return dataclasses.replace(config, num_replicas=replicas)


def stream_names(prefix: str = subjects.PREFIX) -> tuple[str, str]:
    """(command stream, event stream) of one subject prefix: the protocol's names for the default prefix,
    suffixed by the prefix otherwise, so that several prefixes share one server without colliding."""
    if prefix == subjects.PREFIX:
        return subjects.COMMAND_STREAM, subjects.EVENT_STREAM
    suffix = _NAME_UNSAFE.sub("_", prefix).upper()
    return f"{subjects.COMMAND_STREAM}_{suffix}", f"{subjects.EVENT_STREAM}_{suffix}"


@dataclass(frozen=True, slots=True)
class Failover:
    """The connection came back after a loss: on `server` (`host:port (name)`), having been on `lost`.
    `moved`: on another server than before (a cluster's failover), not the same one restarted."""

    at: float  # time.time() of the reconnection
    lost: str
    server: str

    @property
    def moved(self) -> bool:
        return self.lost != self.server


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The server's acknowledgement of a publish: where the message is, and whether it was a duplicate."""

    stream: str
    seq: int
    duplicate: bool


_PING = b"PING\r\n"


class Delivery:
    """One message delivered by a pull consumer. Settle it exactly once: ack, nak or term."""

    __slots__ = ("_ack_timeout_s", "_msg", "_nc")

    def __init__(self, nc: Client, msg: Msg, ack_timeout_s: float) -> None:
        self._nc = nc
        self._msg = msg
        self._ack_timeout_s = ack_timeout_s

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def subject(self) -> str:
        return self._msg.subject

    @property
    def msg_id(self) -> str | None:
        return (self._msg.headers or {}).get(Header.MSG_ID.value)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._msg.headers or {})

    @property
    def num_delivered(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, ..."""
        return int(self._msg.metadata.num_delivered)

    @property
    def stream_seq(self) -> int:
        return int(self._msg.metadata.sequence.stream)

    async def _confirmed(self, what: str, payload: bytes) -> None:
        try:
            await self._nc.request(self._msg.reply, payload, timeout=self._ack_timeout_s)
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise BusError(f"the server did not confirm the {what} within {self._ack_timeout_s} s",
                           where=f"{self.subject} (stream seq {self.stream_seq})",
                           fix="the message may be delivered again; handlers must be idempotent") from exc
        except nats.errors.Error as exc:
            raise BusError(f"{what} failed: {exc}", where=self.subject,
                           fix="check the connection to nats-server") from exc

    async def ack(self) -> None:
        """Acknowledge; returns once the server confirmed it (double ack), so it will not be redelivered."""
        await self._confirmed("ack", b"+ACK")

    async def ack_nowait(self) -> None:
        """Acknowledge without waiting for the server's confirmation (one round trip less; if the ack is
        lost, the message comes again after ack_wait)."""
        await self._nc.publish(self._msg.reply, b"+ACK")

    async def nak(self, delay_s: float | None = None) -> None:
        """Ask for redelivery, after `delay_s` seconds when given (else at once)."""
        payload = b"-NAK"
        if delay_s is not None and delay_s > 0:
            payload += b' {"delay": %d}' % int(delay_s * 1e9)
        await self._confirmed("nak", payload)

    async def in_progress(self) -> None:
        """Still working: restart the ack-wait clock. May be sent any number of times."""
        await self._confirmed("in-progress", b"+WPI")

    async def term(self) -> None:
        """Never deliver this message again (poison message)."""
        await self._confirmed("term", b"+TERM")


class Consumer:
    """A reader of one durable pull consumer; several Consumers on one durable share the work. Its
    messages come through standing pull requests (engine.bus.pull): fetch from one task at a time."""

    def __init__(self, nc: Client, js: JetStreamContext, stream: str, durable: str,
                 ack_timeout_s: float, arrived: asyncio.Event | None = None) -> None:
        self._nc = nc
        self._js = js
        self._feed = PullFeed(nc, stream, durable, arrived)
        self.stream = stream
        self.durable = durable
        self._ack_timeout_s = ack_timeout_s

    async def start(self) -> None:
        await self._feed.start()

    async def fetch(self, batch: int = 1, timeout: float = 5.0) -> list[Delivery]:
        """Up to `batch` messages; waits at most `timeout` seconds for the first; [] when none came.
        At most `batch` messages are asked of the server, minus those already on their way."""
        try:
            msgs = await self._feed.take(max(1, batch), timeout)
        except nats.errors.Error as exc:
            raise BusError(f"fetch failed: {exc}", where=f"consumer {self.durable} on {self.stream}",
                           transient=True, fix="check the connection to nats-server") from exc
        return [Delivery(self._nc, m, self._ack_timeout_s) for m in msgs]

    async def pending(self) -> int:
        """Messages not yet delivered to this durable consumer (plus redeliveries waiting)."""
        info = await self._js.consumer_info(self.stream, self.durable)
        return int(info.num_pending or 0) + int(info.num_redelivered or 0)

    async def close(self) -> None:
        """Stop this reader (the durable consumer stays on the server)."""
        try:
            await self._feed.close()
        except nats.errors.Error as exc:  # already closed with the connection
            logger.debug("closing the reader of %s: %s", self.durable, exc)


class CoreSubscription:
    """A core NATS subscription (at-most-once, no persistence)."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        try:
            await self._sub.unsubscribe()
        except nats.errors.Error as exc:
            logger.debug("unsubscribe: %s", exc)


class Bus:
    """One connection to NATS for one subject prefix. Create it with `await Bus.connect(url)`; `url` may
    list the servers of a cluster (`nats://a:4222,nats://b:4222`): the connection moves to another one
    when its server goes away (`failovers`)."""

    def __init__(self, nc: Client, prefix: str, *, ack_timeout_s: float = 5.0,
                 publish_timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=publish_timeout_s)
        self.prefix = prefix
        self.command_stream, self.event_stream = stream_names(prefix)
        self._ack_timeout_s = ack_timeout_s
        self._publish_timeout_s = publish_timeout_s
        self._reconnected: list[Callable[[], None]] = []
        self._reports: ReportLine | None = None  # a worker's reports and their answers, once it sends one
        self.server = self._current_server()  # `host:port (name)` of the server the connection is on
        self.failovers: list[Failover] = []  # each reconnection, oldest first
        self.replicas: int | None = None  # the streams' replicas, once ensure_streams ran

    @classmethod
    async def connect(cls, url: str | Sequence[str], prefix: str = subjects.PREFIX, *,
                      name: str | None = None, connect_timeout_s: float = 5.0, ack_timeout_s: float = 5.0,
                      publish_timeout_s: float = 5.0) -> Bus:
        """Connect to the server `url` names, or to one of the servers of a comma-separated list (or a
        sequence): nats-py tries them in a random order and, once connected, reconnects to any of them
        (and to the cluster's other servers it learns of) for ever."""
        servers = server_list(url)
        shown = ",".join(_without_credentials(s) for s in servers)
        buses: list[Bus] = []  # the bus, once made: the callbacks below are registered before it exists

        async def on_error(exc: Exception) -> None:
            logger.debug("nats error on %s: %r", shown, exc)

        async def on_disconnect() -> None:
            logger.info("disconnected from nats %s", buses[0].server if buses else shown)

        reconnected: list[Callable[[], None]] = []

        async def on_reconnect() -> None:
            if buses:
                buses[0]._record_reconnection()
            for callback in reconnected:
                callback()

        # the first connection is retried for about connect_timeout_s, then fails; once connected, the
        # client reconnects forever, so a restarted nats-server (or another server of the cluster) is
        # picked up again. With several servers, pings every 10 s notice a server that stopped answering
        # without closing the connection (a partition) within about 30 s, not the default 6 minutes.
        wait_s = 0.25
        options: dict[str, Any] = {}
        if len(servers) > 1:
            options.update(ping_interval=10, max_outstanding_pings=2)
        try:
            nc = await nats.connect(servers[0] if len(servers) == 1 else servers,
                                    name=name or f"noetl-{prefix}", connect_timeout=connect_timeout_s,
                                    allow_reconnect=True, reconnect_time_wait=wait_s,
                                    max_reconnect_attempts=max(1, int(connect_timeout_s / wait_s)),
                                    error_cb=on_error, disconnected_cb=on_disconnect,
                                    reconnected_cb=on_reconnect, **options)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise BusError(f"cannot connect to nats at {shown} within {connect_timeout_s} s: {exc!r}",
                           where="Bus.connect", transient=True,
                           fix="start the embedded server (engine.runtime.embedded.start_nats) or set "
                               "NOETL_NATS_URL to running nats-servers with JetStream (several separated "
                               "by commas)") from exc
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        bus = cls(nc, prefix, ack_timeout_s=ack_timeout_s, publish_timeout_s=publish_timeout_s)
        bus._reconnected = reconnected
        buses.append(bus)
        logger.info("connected to nats %s (servers: %s)", bus.server, shown)
        return bus

    def _server_info(self) -> dict[str, Any]:
        """The INFO the server the connection is on sent (nats-py keeps it, without a public accessor)."""
        info = getattr(self._nc, "_server_info", None)
        return info if isinstance(info, dict) else {}

    def _current_server(self) -> str:
        connected = self._nc.connected_url
        where = _host_port(connected) if connected is not None else "?"
        return server_name(self._server_info(), where)

    def _record_reconnection(self) -> None:
        lost, self.server = self.server, self._current_server()
        failover = Failover(at=time.time(), lost=lost, server=self.server)
        self.failovers.append(failover)
        if failover.moved:
            logger.warning("nats failover: the connection moved from %s to %s", lost, self.server)
        else:
            logger.info("reconnected to nats %s", self.server)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback()` each time the connection comes back after a loss (a restarted server)."""
        self._reconnected.append(callback)

    @property
    def is_connected(self) -> bool:
        return self._nc.is_connected

    # ------------------------------------------------------------------------------------------ streams

    async def ensure_streams(self, *, duplicate_window_s: float = DUPLICATE_WINDOW_S,
                             event_max_age_s: float | None = None, replicas: int | None = None) -> None:
        """Create (or bring up to date) the command stream (work queue: a command is gone once acked)
        and the event stream (limits: kept for replays, optionally for `event_max_age_s` seconds), each
        with `replicas` copies; None: 3 on a cluster of 3 or more JetStream servers, else 1, and never fewer
        than the streams have already (docs/reliability.md). `self.replicas` says then how many they have."""
        explicit = replicas is not None
        wanted = (check_replicas(replicas, "Bus.ensure_streams") if replicas is not None
                  else default_replicas(self._server_info()))
        if not explicit:  # never scale down by itself (a server of the cluster may be down just now)
            for name in (self.command_stream, self.event_stream):
                wanted = max(wanted, await self._replicas_of(name) or 1)
        got = await self._ensure_retrying(StreamConfig(
            name=self.command_stream, subjects=[subjects.command_subjects(self.prefix)],
            retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
            duplicate_window=duplicate_window_s, num_replicas=wanted,
            description="noetl commands, one work queue per pool"), explicit=explicit)
        got_events = await self._ensure_retrying(StreamConfig(
            name=self.event_stream, subjects=[subjects.event_subjects(self.prefix)],
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
            max_age=event_max_age_s, duplicate_window=duplicate_window_s, num_replicas=wanted,
            description="noetl execution events"), explicit=explicit)
        self.replicas = min(got, got_events)
        logger.info("streams %s and %s have %d replica(s) (on %s)", self.command_stream, self.event_stream,
                    self.replicas, self.server)

    async def _ensure_retrying(self, config: StreamConfig, *, explicit: bool,
                               within_s: float = ENSURE_STREAMS_WITHIN_S) -> int:
        """`_ensure_stream`, again while JetStream does not answer (a cluster electing a leader after a
        server's restart takes a few seconds), for up to `within_s` seconds."""
        deadline = time.monotonic() + within_s
        wait_s = 0.25
        while True:
            try:
                return await self._ensure_stream(config, explicit=explicit)
            except BusError as exc:
                if not exc.transient or time.monotonic() + wait_s > deadline:
                    raise
                logger.info("stream %s: %s; trying again in %.2f s", config.name, exc.message, wait_s)
            await asyncio.sleep(wait_s)
            wait_s = min(2.0, wait_s * 2)

    async def _ensure_stream(self, config: StreamConfig, *, explicit: bool) -> int:
        """Create or update the stream; the replicas it has then."""
        wanted = int(config.num_replicas or 1)
        try:
            info = await self._js.add_stream(config)
            return int(info.config.num_replicas or 1)
        except nats.js.errors.APIError as exc:  # 10074 comes as a ServerError, 10005 and 10058 as BadRequest
            if exc.err_code in REPLICA_REFUSALS and wanted > 1:
                if explicit:
                    raise BusError(f"cannot create stream {config.name} with {wanted} replicas: "
                                   f"{exc.description}", where=f"stream {config.name}",
                                   fix="start enough nats-servers with JetStream in the cluster, or set "
                                       "NOETL_NATS_REPLICAS=1") from exc
                logger.warning("stream %s: the server refused %d replicas (%s); creating it with 1",
                               config.name, wanted, exc.description)
                return await self._ensure_stream(_with_replicas(config, 1), explicit=True)
            if exc.err_code != _STREAM_CONFIG_MISMATCH:
                raise BusError(f"cannot create stream {config.name}: {exc.description}",
                               where=f"stream {config.name}", fix="check the nats-server log") from exc
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            raise BusError(f"cannot create stream {config.name}: JetStream did not answer ({exc!r})",
                           where=f"stream {config.name}", transient=True,
                           fix="is JetStream enabled on the server (nats-server -js)? A cluster electing "
                               "its leader answers again within seconds") from exc
        except nats.errors.Error as exc:
            raise BusError(f"cannot create stream {config.name}: {exc!r}", where=f"stream {config.name}",
                           fix="is JetStream enabled on the server (nats-server -js)?") from exc
        try:
            info = await self._js.update_stream(config)
            logger.info("updated the configuration of stream %s", config.name)
            return int(info.config.num_replicas or 1)
        except nats.errors.Error as exc:
            refused = exc
        current = await self._replicas_of(str(config.name))
        if current is not None and current != wanted:  # the replicas could not change: keep them
            logger.warning("stream %s keeps its %d replica(s): the server refused %d (%s); to change them, "
                           "move its data to a new stream or delete it (nats stream rm %s)", config.name,
                           current, wanted, refused, config.name)
            try:
                info = await self._js.update_stream(_with_replicas(config, current))
                return int(info.config.num_replicas or 1)
            except nats.errors.Error as exc:
                refused = exc
        raise BusError(f"stream {config.name} exists with a configuration that cannot be changed: {refused}",
                       where=f"stream {config.name}",
                       fix="delete the stream (nats stream rm) or use another prefix") from refused

    async def _replicas_of(self, stream: str) -> int | None:
        try:
            info = await self._js.stream_info(stream)
        except nats.errors.Error:
            return None
        return int(info.config.num_replicas or 1)

    async def delete_streams(self) -> None:
        """Remove both streams of this prefix and everything in them (tests, resets)."""
        for name in (self.command_stream, self.event_stream):
            try:
                await self._js.delete_stream(name)
            except nats.js.errors.NotFoundError:
                pass

    # --------------------------------------------------------------------------------------- publishing

    async def _publish(self, subject: str, stream: str, msg_id: str, data: bytes) -> PublishResult:
        if not msg_id:
            raise BusError("a message id is required (JetStream de-duplicates by it)", where=subject,
                           fix="pass the command's or event's idempotency key")
        try:
            ack = await self._js.publish(subject, data, timeout=self._publish_timeout_s, stream=stream,
                                         headers={Header.MSG_ID.value: msg_id})
        except nats.js.errors.NoStreamResponseError as exc:  # also: JetStream still recovering
            raise BusError(f"no stream takes subject {subject}", where=subject, transient=True,
                           fix="call Bus.ensure_streams() first") from exc
        except nats.errors.MaxPayloadError as exc:
            raise BusError(f"the message is too large for the server: {exc!r}", where=subject,
                           fix="send large data by reference") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusError(f"publish was not acknowledged: {exc!r}", where=subject, transient=True,
                           fix="check the nats-server; publishing again with the same id is safe") from exc
        return PublishResult(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))

    async def publish_command(self, pool: str, msg_id: str, data: bytes) -> PublishResult:
        """Put a command on the work queue of `pool`; returns once the server stored it."""
        return await self._publish(subjects.command_subject(pool, self.prefix), self.command_stream,
                                   msg_id, data)

    async def publish_event(self, execution_id: str, msg_id: str, data: bytes) -> PublishResult:
        """Append an event of `execution_id` to the event stream; returns once the server stored it."""
        return await self._publish(subjects.event_subject(execution_id, self.prefix), self.event_stream,
                                   msg_id, data)

    # ---------------------------------------------------------------------------------------- consuming

    async def _consumer(self, stream: str, durable: str, filter_subject: str, *, ack_wait_s: float,
                        max_deliver: int, max_ack_pending: int | None,
                        arrived: asyncio.Event | None = None, start_seq: int = 0) -> Consumer:
        """`arrived`: set when a message comes; `start_seq`: a new consumer
        starts at this stream sequence (0: at the first message)."""
        config = ConsumerConfig(durable_name=durable, name=durable, filter_subject=filter_subject,
                                ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq > 1
                                else DeliverPolicy.ALL, opt_start_seq=start_seq if start_seq > 1 else None,
                                ack_wait=ack_wait_s, max_deliver=max_deliver,
                                max_ack_pending=max_ack_pending)
        try:
            await self._js.add_consumer(stream, config)  # create, or update when it exists
            consumer = Consumer(self._nc, self._js, stream, durable, self._ack_timeout_s, arrived)
            await consumer.start()
        except nats.js.errors.NotFoundError as exc:
            raise BusError(f"stream {stream} does not exist", where=f"consumer {durable}",
                           fix="call Bus.ensure_streams() first") from exc
        except nats.errors.Error as exc:
            raise BusError(f"cannot create consumer {durable} on {stream}: {exc}",
                           where=f"consumer {durable}",
                           fix="on a work-queue stream each pool may have only one durable consumer") from exc
        return consumer

    async def command_consumer(self, pool: str, *, ack_wait_s: float = 30.0, max_deliver: int = 5,
                               max_ack_pending: int | None = None) -> Consumer:
        """The pool's work queue: each command goes to one of the Consumers bound to it. A command not
        acked within `ack_wait_s` is delivered again, at most `max_deliver` times in all."""
        return await self._consumer(self.command_stream, f"pool-{pool}",
                                    subjects.command_subject(pool, self.prefix), ack_wait_s=ack_wait_s,
                                    max_deliver=max_deliver, max_ack_pending=max_ack_pending)

    async def trigger_consumer(self, trigger_id: str, subject: str, *, since: datetime,
                               all_subjects: Sequence[str]) -> Consumer:
        """A reader of a subject trigger's durable consumer (engine.bus.trigger_subjects): messages on
        `subject` since `since`, kept while no one reads them."""
        stream = await trigger_subjects.bind(self._js, prefix=self.prefix, trigger_id=trigger_id,
                                             subject=subject, since=since, all_subjects=all_subjects)
        consumer = Consumer(self._nc, self._js, stream, trigger_subjects.durable_name(trigger_id),
                            self._ack_timeout_s)
        await consumer.start()
        return consumer

    async def check_trigger_subject(self, trigger_id: str, subject: str, *, since: datetime,
                                    all_subjects: Sequence[str]) -> None:
        """Make the subject trigger's consumer now (a subject that cannot be read is refused at once)."""
        await trigger_subjects.bind(self._js, prefix=self.prefix, trigger_id=trigger_id, subject=subject,
                                    since=since, all_subjects=all_subjects)

    async def drop_trigger_consumer(self, trigger_id: str, subject: str) -> None:
        """Delete a deleted subject trigger's consumer."""
        stream: str | None = None
        with contextlib.suppress(nats.errors.Error):
            stream = await self._js.find_stream_name_by_subject(subject)
        await trigger_subjects.unbind(self._js, prefix=self.prefix, trigger_id=trigger_id, stream=stream)

    async def command_queue_depths(self) -> dict[str, int]:
        """Commands not yet handed to a worker (plus redeliveries waiting), by pool."""
        try:
            infos = await self._js.consumers_info(self.command_stream)
        except nats.errors.Error as exc:
            raise BusError(f"cannot read the consumers of {self.command_stream}: {exc!r}",
                           where=self.command_stream, fix="check the connection to nats-server") from exc
        depths: dict[str, int] = {}
        for info in infos:
            name = info.name or ""
            if name.startswith("pool-"):
                depths[name[5:]] = int(info.num_pending or 0) + int(info.num_redelivered or 0)
        return depths

    async def commands_published(self) -> int:
        """How many messages the command stream has taken so far (its last sequence number): with
        commands packed into shared messages, fewer than the commands sent."""
        try:
            info = await self._js.stream_info(self.command_stream)
        except nats.errors.Error as exc:
            raise BusError(f"cannot read stream {self.command_stream}: {exc!r}", where=self.command_stream,
                           fix="check the connection to nats-server") from exc
        return int(info.state.last_seq or 0)

    async def event_reader(self, durable: str, *, ack_wait_s: float = 30.0,
                           partitions: Iterable[int] = ALL_PARTITIONS) -> EventReader:
        """The orchestrator's reader of `partitions` (engine/bus/event_reader.py: more are adopted and
        released as ownership changes): each partition's events through the durable consumer
        `<durable>-pNN`, and the workers' reports on it (one orchestrator of the queue group takes each).
        Close it when it stops."""
        if not _NAME_SAFE.match(durable):
            raise BusError(f"consumer name '{durable}' may use only letters, digits, '_' and '-'",
                           where="Bus.event_reader", fix="pick a name like 'orchestrator'")

        async def open_consumer(partition: int, arrived: asyncio.Event) -> Consumer:
            return await self._partition_consumer(durable, partition, ack_wait_s=ack_wait_s, arrived=arrived)

        async def open_inbox(partition: int, arrived: asyncio.Event) -> ReportInbox:
            subject = subjects.report_subject(partition, self.prefix)
            inbox = ReportInbox(self._nc, subject, arrived)
            try:
                await inbox.start()
            except nats.errors.Error as exc:
                raise BusError(f"cannot subscribe to workers' reports: {exc!r}", where=subject,
                               transient=True, fix="check the connection to nats-server") from exc
            return inbox

        async def settle() -> None:
            try:
                await self._server_has_it()
            except (TimeoutError, nats.errors.Error) as exc:
                raise BusError(f"the server did not confirm the orchestrator's subscriptions: {exc!r}",
                               where="Bus.event_reader", transient=True,
                               fix="check the connection to nats-server") from exc

        reader = EventReader(open_consumer, open_inbox, settle)
        try:
            await reader.adopt(partitions)
        except BaseException:
            await reader.close()
            raise
        return reader

    async def _partition_consumer(self, durable: str, partition: int, *, ack_wait_s: float,
                                  arrived: asyncio.Event) -> Consumer:
        """The durable consumer of one partition's events, started again from its ack floor: what it had
        delivered and nobody acked comes again now (a former owner died or stalled holding it)."""
        name = f"{durable}-p{partition:02d}"
        start = 0
        try:
            info = await self._js.consumer_info(self.event_stream, name)
            start = int(info.ack_floor.stream_seq or 0) + 1 if info.ack_floor else 0
            await self._js.delete_consumer(self.event_stream, name)
        except nats.js.errors.NotFoundError:
            pass
        except nats.errors.Error as exc:
            raise BusError(f"cannot read consumer {name} on {self.event_stream}: {exc!r}", where=name,
                           transient=True, fix="check the connection to nats-server") from exc
        return await self._consumer(self.event_stream, name,
                                    subjects.partition_event_subjects(partition, self.prefix),
                                    ack_wait_s=ack_wait_s, max_deliver=-1, max_ack_pending=None,
                                    arrived=arrived, start_seq=start)

    async def report(self, data: bytes, *, execution_id: str, attempt: int = 1) -> asyncio.Future[str]:
        """Send a worker's report (events of `execution_id` as `encode_events` makes them) to the
        orchestrator that owns its partition; returns once it is on its way, with a future of the answer
        (engine/bus/reports.py: ok, drop, retry:<s>, absent). Await it with a timeout: an orchestrator
        that died never answers."""
        subject = subjects.report_subject(partition_of(execution_id), self.prefix)
        if self._reports is None:
            self._reports = ReportLine(self._nc)
        try:
            return await self._reports.send(subject, data, attempt)
        except nats.errors.Error as exc:
            raise BusError(f"sending a report failed: {exc!r}", where=subject,
                           transient=True, fix="check the connection to nats-server") from exc

    async def event_consumer(self, durable: str, *, ack_wait_s: float = 30.0, max_deliver: int = -1,
                             max_ack_pending: int | None = None,
                             arrived: asyncio.Event | None = None) -> Consumer:
        """A durable reader of all events of this prefix, from the first one it has not acked
        (`arrived`: set when a message comes, shared with another source by `event_reader`)."""
        if not _NAME_SAFE.match(durable):
            raise BusError(f"consumer name '{durable}' may use only letters, digits, '_' and '-'",
                           where="Bus.event_consumer", fix="pick a name like 'orchestrator'")
        return await self._consumer(self.event_stream, durable, subjects.event_subjects(self.prefix),
                                    ack_wait_s=ack_wait_s, max_deliver=max_deliver,
                                    max_ack_pending=max_ack_pending, arrived=arrived)

    # ---------------------------------------------------------------------------- core NATS (no stream)

    async def publish_cancel(self, data: bytes) -> None:
        """Broadcast a cancellation to every subscribed worker (at most once, not stored)."""
        await self.publish_core(subjects.cancel_subject(self.prefix), data)

    async def subscribe_cancel(self, callback: DataCallback) -> CoreSubscription:
        """Call `callback(data)` for every cancellation broadcast from now on."""
        return await self.subscribe_core(subjects.cancel_subject(self.prefix), callback)

    async def publish_core(self, subject: str, data: bytes) -> None:
        """A core NATS publish (flushed to the server before returning)."""
        try:
            await self._nc.publish(subject, data)
            await self._server_has_it(max(1, int(self._publish_timeout_s)))
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusError(f"core publish failed: {exc!r}", where=subject, transient=True,
                           fix="check the connection to nats-server") from exc

    async def round_trip(self) -> None:
        """Return once the server has processed everything this connection sent so far (a PING and its
        PONG): a sender that waits for it between rounds lets what is ready meanwhile go together."""
        try:
            await self._pinged(max(1, int(self._publish_timeout_s)))
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusError(f"the server did not answer a ping: {exc!r}", where="round trip", transient=True,
                           fix="check the connection to nats-server") from exc

    async def _pinged(self, timeout_s: int) -> None:
        """A PING queued behind what this connection has pending, so they leave in one write (nats-py's
        flush writes its PING by itself, after the pending commands were written: two or three writes,
        each waking nats-server); returns on its PONG. Falls back to `_server_has_it` where nats-py's
        internals are not as expected. Should nats-py's own keep-alive PING go out ahead of this one,
        its PONG ends this wait early: a round trip paces a sender, nothing depends on it more."""
        nc = self._nc
        pending, pongs = getattr(nc, "_pending", None), getattr(nc, "_pongs", None)
        if not isinstance(pending, list) or not isinstance(pongs, list) or not nc.is_connected \
                or not isinstance(getattr(nc, "_pending_data_size", None), int):
            await self._server_has_it(timeout_s)
            return
        pong: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        pongs.append(pong)
        pending.append(_PING)
        nc._pending_data_size += len(_PING)
        await nc._flush_pending()
        try:
            await asyncio.wait_for(asyncio.shield(pong), timeout_s)
        except TimeoutError:
            raise nats.errors.FlushTimeoutError from None

    async def publish_core_nowait(self, subject: str, data: bytes) -> None:
        """A core NATS publish without waiting for the flush (hot paths: replies, benchmarks)."""
        await self._nc.publish(subject, data)

    async def subscribe_core(self, subject: str, callback: DataCallback,
                             queue: str = "") -> CoreSubscription:
        """Subscribe to a core NATS subject; active on the server when this returns."""
        async def handler(msg: Msg) -> None:
            try:
                await callback(msg.data)
            except Exception:
                logger.exception("callback for %s failed", subject)

        sub = await self._nc.subscribe(subject, queue=queue, cb=handler)
        await self._server_has_it()
        return CoreSubscription(sub)

    async def _server_has_it(self, timeout_s: int = 10) -> None:
        """Everything written on this connection so far reached the server and was processed by it.

        nats-py's `flush()` writes its PING straight to the socket, ahead of the commands still in its
        pending buffer (a SUB or a PUB just made, which its flusher task writes later), so the PONG may
        come back before the server has seen them: a subscriber then missed a broadcast published right
        after its subscription "was flushed" (2 in 300 tries here). The pending buffer is written out
        first, then the PING goes."""
        write_pending = getattr(self._nc, "_flush_pending", None)
        if write_pending is not None:
            await write_pending(force_flush=True)
        await self._nc.flush(timeout=timeout_s)

    def new_inbox(self) -> str:
        """A unique subject for replies."""
        return self._nc.new_inbox()

    async def request(self, subject: str, data: bytes, timeout_s: float = 5.0) -> bytes:
        """Core NATS request/reply: publish and wait for the first reply."""
        try:
            msg = await self._nc.request(subject, data, timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise BusError(f"no reply within {timeout_s} s", where=subject,
                           fix="is a responder subscribed?") from exc
        except nats.errors.NoRespondersError as exc:
            raise BusError("no responder is subscribed", where=subject,
                           fix="start the service that answers on this subject") from exc
        return msg.data

    async def serve(self, subject: str, handler: Callable[[bytes], Awaitable[bytes]],
                    queue: str = "") -> CoreSubscription:
        """Answer core NATS requests on `subject` with `await handler(data)`."""
        async def respond(msg: Msg) -> None:
            try:
                reply = await handler(msg.data)
            except Exception:
                logger.exception("request handler for %s failed", subject)
                return
            if msg.reply:
                await self._nc.publish(msg.reply, reply)

        sub = await self._nc.subscribe(subject, queue=queue, cb=respond)
        await self._nc.flush()
        return CoreSubscription(sub)

    # ------------------------------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Flush what is pending and close the connection. Idempotent."""
        if self._nc.is_closed:
            return
        if self._reports is not None:
            reports, self._reports = self._reports, None
            with contextlib.suppress(Exception):
                await reports.close()
        try:
            if self._nc.is_connected:
                await self._nc.flush(timeout=2)
        except (TimeoutError, nats.errors.Error) as exc:
            logger.debug("flush before close: %r", exc)
        await self._nc.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
