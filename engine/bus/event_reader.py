"""The orchestrator's input, by partition: the event stream's messages and the workers' reports of the
partitions this process owns (engine/protocol/partitions.py), read as one.

Each partition has a durable consumer of its own on the event stream (`<durable>-pNN`, filtered on its
subject) and a report subject of its own. Adopting a partition starts the consumer again from the first
message not acked (JetStream's ack floor), so whatever a former owner took and never settled comes
again at once instead of after the ack wait, and a stalled former owner's standing pull requests end;
releasing it stops reading: reports not taken yet are answered `retry`, so they go to the next owner.
A fetch looks only at the sources something arrived on since the last look, and at all of them every
SWEEP_S (the pull feeds top up their standing requests when they are looked at).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Literal

from engine.bus.reports import Report, ReportInbox

if TYPE_CHECKING:
    from engine.bus.jetstream import Consumer, Delivery

logger = logging.getLogger(__name__)

SWEEP_S = 1.0  # every source is looked at least this often (pull requests expire after 5 s)

OpenConsumer = Callable[[int, asyncio.Event], Awaitable["Consumer"]]
OpenInbox = Callable[[int, asyncio.Event], Awaitable[ReportInbox]]


class _Arrival(asyncio.Event):
    """What a partition's sources set when a message arrives (in place of the asyncio.Event PullFeed and
    ReportInbox set): marks the partition and wakes the reader."""

    def __init__(self, partition: int, ready: set[int], wake: asyncio.Event) -> None:
        super().__init__()
        self.partition = partition
        self._ready = ready
        self._wake = wake

    def set(self) -> None:
        self._ready.add(self.partition)
        self._wake.set()

    def clear(self) -> None:
        return None

    def is_set(self) -> bool:
        return self.partition in self._ready

    async def wait(self) -> Literal[True]:
        return await self._wake.wait()


class EventReader:
    """Reports first (they end steps), then the event stream, of the partitions adopted."""

    def __init__(self, open_consumer: OpenConsumer, open_inbox: OpenInbox,
                 settle: Callable[[], Awaitable[None]]) -> None:
        self._open_consumer = open_consumer
        self._open_inbox = open_inbox
        self._settle = settle  # returns once the server has processed the subscriptions made so far
        self._consumers: dict[int, Consumer] = {}
        self._inboxes: dict[int, ReportInbox] = {}
        self._ready: set[int] = set()
        self._wake = asyncio.Event()
        self._swept_at = 0.0

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._consumers)

    async def adopt(self, partitions: Iterable[int]) -> None:
        """Start reading these partitions (each consumer from its first unacked message)."""
        added = False
        for partition in sorted(set(partitions) - set(self._consumers)):
            arrival = _Arrival(partition, self._ready, self._wake)
            inbox = await self._open_inbox(partition, arrival)
            try:
                consumer = await self._open_consumer(partition, arrival)
            except BaseException:
                await inbox.close()
                raise
            self._inboxes[partition], self._consumers[partition] = inbox, consumer
            self._ready.add(partition)
            added = True
        if added:
            await self._settle()
            self._wake.set()

    async def release(self, partitions: Iterable[int]) -> None:
        """Stop reading these partitions: their reports not taken yet are answered `retry`; their stream
        messages not settled come to the next owner (it starts the consumer again from the ack floor)."""
        for partition in sorted(set(partitions) & set(self._consumers)):
            inbox, consumer = self._inboxes.pop(partition), self._consumers.pop(partition)
            self._ready.discard(partition)
            await inbox.close()
            await consumer.close()

    async def fetch(self, batch: int = 1, timeout: float = 5.0) -> list[Delivery | Report]:
        """Up to `batch` messages of the partitions read; waits at most `timeout` seconds for the first."""
        self._wake.clear()  # before looking: whatever arrives from now on wakes the wait below
        found = await self._take(batch)
        if found or timeout <= 0:
            return found
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return await self._take(batch)  # a sweep may be due
        return await self._take(batch)

    @property
    def reports_waiting(self) -> int:
        return sum(inbox.waiting for inbox in self._inboxes.values())

    async def _take(self, batch: int) -> list[Delivery | Report]:
        now = asyncio.get_running_loop().time()
        if now - self._swept_at >= SWEEP_S:
            self._swept_at = now
            looking = set(self._consumers)
        else:
            looking = self._ready & set(self._consumers)
        self._ready.clear()
        found: list[Delivery | Report] = []
        for partition in looking:
            taken = self._inboxes[partition].take(batch - len(found))
            found.extend(taken)
            if self._inboxes[partition].waiting:
                self._ready.add(partition)
        for partition in looking:
            if len(found) >= batch:
                self._ready.add(partition)  # not looked at: maybe more there
                continue
            got = await self._consumers[partition].fetch(batch - len(found), timeout=0)
            found.extend(got)
            if got:
                self._ready.add(partition)  # maybe more there
        return found

    async def close(self) -> None:
        await self.release(list(self._consumers))
