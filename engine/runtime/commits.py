"""The orchestrator's commit pipeline: handled batches -> the Postgres event log, in order, grouped.

The orchestrator folds a batch through `fire` and publishes its commands at once; the batch's events
go here and are appended while it already handles the next batch (one append carries every batch
that queued up meanwhile: group commit). Only once a batch's events are committed does its
after-commit work run: acking the bus messages it came from (so an event is still taken as happened
only when it is in the log), terminal statuses, child reports. A command may therefore reach a worker
before the events that caused it are durable; the orchestrator holds back an outcome of a command it
never issued until the cause is taken again from the log (docs/runtime.md, "commit pipeline").

When an append fails, that batch and every batch queued behind it are given back to the bus (nak) and
the pipeline stays `broken` until the orchestrator has rebuilt its state from the log and called
`repair`: what was decided on top of the lost batch must be decided again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from engine.protocol.events import Event
from engine.runtime.partitions import Fence, PartitionFencedError
from engine.runtime.ports import EventLog, Message

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
NAK_DELAY_S = 1.0  # a batch given back after a failed append comes again after this
MAX_QUEUED = 64  # handled batches waiting for their commit before `submit` waits
GROUP_WINDOW_S = 0.02  # batches wait at most this long for company before they are appended
GROUP_EVENTS = 256  # ... unless this many events already wait (or one batch ends an execution)


@dataclass(slots=True)
class Handled:
    """One handled batch: the events to store, the messages to ack or drop once they are stored, and
    what else must wait for the commit."""

    events: list[Event]
    deliveries: list[Message] = field(default_factory=list)
    poison: list[Message] = field(default_factory=list)
    after: list[AfterCommit] = field(default_factory=list)
    urgent: bool = False  # ends an execution: appended without waiting for company

    def executions(self) -> set[str]:
        return {event.execution_id for event in self.events}


class CommitPipeline:
    """Appends handled batches in submission order, several per transaction, off the handler's path."""

    def __init__(self, events: EventLog, *, max_queued: int = MAX_QUEUED,
                 group_window_s: float = GROUP_WINDOW_S, fence: Callable[[], Fence] | None = None) -> None:
        self._events = events
        self._fence = fence  # an orchestrator that owns partitions by lease: its appends carry them
        self._max_queued = max_queued
        self._group_window_s = group_window_s
        self._queue: deque[Handled] = deque()
        self._busy = 0  # batches taken from the queue and not yet settled
        self._uncommitted: Counter[str] = Counter()  # execution id -> batches not yet settled
        self._wake = asyncio.Event()
        self._settled = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._flushing = 0  # callers waiting in `flush`: no group window while there are any
        self.broken = False
        self.fenced = False  # an append was refused: the leases are looked at again before anything else

    # ------------------------------------------------------------------ the handler's side
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="noetl-commit-pipeline")

    async def submit(self, handled: Handled) -> None:
        """Queue a handled batch (waits while `max_queued` batches already wait)."""
        self.start()
        if len(self._queue) >= self._max_queued:
            async with self._settled:
                await self._settled.wait_for(lambda: len(self._queue) < self._max_queued)
        self._queue.append(handled)
        self._uncommitted.update(handled.executions())
        self._wake.set()

    def uncommitted(self, execution_id: str) -> bool:
        """Whether some of the execution's events are still on their way to the log."""
        return self._uncommitted[execution_id] > 0

    @property
    def idle(self) -> bool:
        return not self._queue and not self._busy

    async def flush(self) -> None:
        """Return once every batch submitted so far is settled (committed, or given back)."""
        if self.idle:
            return
        self._flushing += 1
        self._wake.set()
        try:
            async with self._settled:
                await self._settled.wait_for(lambda: self.idle)
        finally:
            self._flushing -= 1

    def repair(self) -> None:
        """The orchestrator rebuilt its state from the log: append again."""
        self.broken = False

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------------------ the pipeline's task
    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather()
            group = list(self._queue)
            self._queue.clear()
            self._busy = len(group)
            try:
                await self._commit(group)
            finally:
                for handled in group:
                    self._uncommitted.subtract(handled.executions())
                self._uncommitted = +self._uncommitted  # drop the zeros
                self._busy = 0
                async with self._settled:
                    self._settled.notify_all()

    async def _gather(self) -> None:
        """Group commit: a sequential chain hands in a batch every millisecond or two, and one
        transaction for many of them costs Postgres and this process far less than one each. Only acks,
        terminal statuses and child starts wait for it (the commands are already out), and a batch that
        ends an execution, or a `flush`, cuts the wait short."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._group_window_s
        while (not self._flushing and len(self._queue) < self._max_queued
               and not any(h.urgent for h in self._queue)
               and sum(len(h.events) for h in self._queue) < GROUP_EVENTS):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _commit(self, group: Sequence[Handled]) -> None:
        if self.broken:  # decided on top of a batch that was not stored: decide it again
            await self._give_back(group)
            return
        events = [event for handled in group for event in handled.events]
        try:
            if self._fence is None:
                await self._events.record(events)
            else:
                await self._events.record(events, fence=self._fence())
        except PartitionFencedError as exc:
            log.warning("appending %d events was refused: %s; they go to the partition's owner", len(events),
                        exc)
            self.broken = self.fenced = True
            await self._give_back(group)
            return
        except Exception:
            log.exception("appending %d events of %d batches failed; they will be delivered again",
                          len(events), len(group))
            self.broken = True
            await self._give_back(group)
            return
        for handled in group:
            for work in handled.after:
                try:
                    await work()
                except Exception:  # the events are stored: the rest of the batch still settles
                    log.exception("after-commit work failed")
        # one after another, without yielding in between (an ack or an answer only queues its bytes), so
        # that the whole group's acks and answers leave in one write: every write wakes nats-server
        for handled in group:
            for delivery in handled.deliveries:
                with contextlib.suppress(Exception):
                    await delivery.ack_nowait()
            for delivery in handled.poison:
                with contextlib.suppress(Exception):
                    await delivery.term()

    @staticmethod
    async def _give_back(group: Sequence[Handled]) -> None:
        for handled in group:
            for delivery in [*handled.deliveries, *handled.poison]:
                with contextlib.suppress(Exception):
                    await delivery.nak(delay_s=NAK_DELAY_S)
