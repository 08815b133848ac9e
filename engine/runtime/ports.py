"""What the runtime needs from the outside, as protocols: the event log, the bus and the credentials.

The control plane's Postgres store implements the event log and engine.bus.jetstream the bus; the CLI
and the server wire them in. The engine never imports the control plane. The tests' in-memory fakes
(tests/harness/fake_event_log.py, tests/harness/fake_bus.py) implement the same protocols.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from engine.protocol.commands import StartChild
from engine.protocol.events import Event
from engine.protocol.partitions import ALL_PARTITIONS
from engine.runtime.partitions import Fence, LeaseView
from engine.tools.base import CredentialResolver

__all__ = ["ChildStarter", "CredentialResolver", "EventLog", "EventReader", "ExecutionRecord", "Message",
           "PartitionLeases", "Reader", "RuntimeBus", "Subscription"]


class ExecutionRecord(Protocol):
    execution_id: str
    playbook_path: str
    playbook_version: int
    status: str
    parent_execution_id: str | None


class EventLog(Protocol):
    """The durable, append-only log of every execution (Postgres)."""

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Append in order, in one transaction; an event whose idempotency key is already stored is
        skipped. Returns the events actually stored, with their `seq`."""
        ...

    async def record(self, events: Sequence[Event], *, fence: Fence | None = None) -> int:
        """`append` for a writer that needs no copies back: returns how many were stored. With a
        `fence`, nothing is stored (PartitionFencedError) unless its owner still holds each partition of
        the events at the fence's epoch."""
        ...

    async def events(self, execution_id: str, *, after_seq: int = 0,
                     limit: int | None = None) -> list[Event]:
        ...

    async def create_execution(self, execution_id: str, *, playbook_path: str, playbook_version: int,
                               playbook_text: str, payload: dict[str, Any],
                               parent_execution_id: str | None = None,
                               parent_step: str | None = None) -> bool:
        """True if created now; False if it exists with the same playbook and parent (a retry)."""
        ...

    async def set_status(self, execution_id: str, status: str) -> None:
        ...

    async def active_executions(self) -> list[str]:
        """Executions without a terminal event (to resume after an orchestrator restart)."""
        ...


class PartitionLeases(Protocol):
    """The orchestrator's leases on partitions (control_plane/store/partitions.py; the pure part is
    engine/runtime/partitions.py). One instance per orchestrator process, which is one member."""

    member_id: str

    async def view(self) -> LeaseView:
        """Heartbeat as a live member, renew the leases held, and return the live members and owners."""
        ...

    async def held(self) -> dict[int, int]:
        """The partitions this member holds now, with their epochs (renewed by `view`)."""
        ...

    async def take(self, partitions: Iterable[int]) -> dict[int, int]:
        """Take the partitions nobody owns among these; returns those taken, with their new epochs."""
        ...

    async def give(self, partitions: Iterable[int]) -> None:
        """Release these partitions (once what was decided for them is stored)."""
        ...

    async def leave(self) -> None:
        """Release every partition and stop being a member."""
        ...


class ChildStarter(Protocol):
    """Starts the child execution of a `kind: playbook` step (the control plane's execution service)."""

    async def start_child(self, command: StartChild) -> None:
        """Create and start it (idempotent on command.child_execution_id); raise LookupError when the
        catalog has no such playbook."""
        ...


class Message(Protocol):
    """One message delivered by a durable pull consumer (engine.bus.jetstream.Delivery). Settle it once:
    ack, nak or term; unsettled, it is delivered again after the consumer's ack wait."""

    @property
    def data(self) -> bytes: ...

    @property
    def num_delivered(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, ..."""
        ...

    async def ack_nowait(self) -> None:
        """Done with it: never delivered again (unless the ack is lost: then after the ack wait)."""
        ...

    async def nak(self, delay_s: float | None = None) -> None:
        """Deliver it again, after `delay_s` seconds when given."""
        ...

    async def in_progress(self) -> None:
        """Still working on it: the ack wait starts again."""
        ...

    async def term(self) -> None:
        """Never deliver it again (a poison message)."""
        ...


class Reader(Protocol):
    """A reader of one durable pull consumer (engine.bus.jetstream.Consumer)."""

    async def fetch(self, batch: int = 1, timeout: float = 5.0) -> Sequence[Message]:
        """Up to `batch` messages; waits at most `timeout` seconds for the first; empty when none came."""
        ...


class EventReader(Reader, Protocol):
    """The orchestrator's input (engine.bus.event_reader.EventReader): the event stream's messages and
    the workers' reports of the partitions it reads, as Messages (acking a report answers it: stored)."""

    @property
    def partitions(self) -> frozenset[int]: ...

    async def adopt(self, partitions: Iterable[int]) -> None:
        """Start reading these partitions too (each from its first unacked message)."""
        ...

    async def release(self, partitions: Iterable[int]) -> None:
        """Stop reading these partitions; what was not taken goes to their next owner."""
        ...

    async def close(self) -> None: ...


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class RuntimeBus(Protocol):
    """What the orchestrator and the workers use of the bus (engine.bus.jetstream.Bus): a command work
    queue per pool and an event stream, both de-duplicating by message id, workers' reports to the
    orchestrator as requests answered once stored (engine/bus/reports.py), and core NATS broadcasts
    (cancels, worker heartbeats)."""

    @property
    def prefix(self) -> str: ...

    async def ensure_streams(self) -> None: ...

    def on_reconnect(self, callback: Callable[[], None]) -> None: ...

    async def event_consumer(self, durable: str, *, ack_wait_s: float = 30.0) -> Reader: ...

    async def event_reader(self, durable: str, *, ack_wait_s: float = 30.0,
                           partitions: Iterable[int] = ALL_PARTITIONS) -> EventReader:
        """The event stream and the workers' reports of `partitions` (engine/protocol/partitions.py), read
        as one; each partition's events through the durable consumer `<durable>-pNN`."""
        ...

    async def round_trip(self) -> None:
        """Return once the server has processed everything sent so far on this connection."""
        ...

    async def report(self, data: bytes, *, execution_id: str, attempt: int = 1) -> asyncio.Future[str]:
        """Send a report on events of `execution_id` now, to the orchestrator owning its partition; the
        future's answer: ok, drop, retry:<seconds> or absent (reports.py)."""
        ...

    async def command_consumer(self, pool: str, *, ack_wait_s: float = 30.0,
                               max_ack_pending: int | None = None) -> Reader: ...

    async def publish_command(self, pool: str, msg_id: str, data: bytes) -> object:
        """Stored once the call returns; a second message with the same id is dropped."""
        ...

    async def publish_event(self, execution_id: str, msg_id: str, data: bytes) -> object:
        """Stored once the call returns; a second message with the same id is dropped."""
        ...

    async def publish_core(self, subject: str, data: bytes) -> None: ...

    async def publish_cancel(self, data: bytes) -> None: ...

    async def subscribe_core(self, subject: str,
                             callback: Callable[[bytes], Awaitable[None]]) -> Subscription: ...

    async def subscribe_cancel(self, callback: Callable[[bytes], Awaitable[None]]) -> Subscription: ...
