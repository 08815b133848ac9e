"""The worker pools as they are now, for the API and the console: each pool's declared capacity and
labels, the workers heard from (their capacity, concurrency, labels, when last heard) and the commands
waiting in its queue.

Workers announce themselves on core NATS every few seconds (engine.protocol.workers); this service
listens from the first time it is asked (asking every worker for a heartbeat then, and waiting at most
FIRST_WAIT_S for the first answers), so any process serving the API knows the live workers, not only the
orchestrator's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.bus.jetstream import Bus, BusError
from engine.plan.pools import PoolSet
from engine.protocol import subjects
from engine.protocol.workers import DEAD_AFTER_S, WorkerHeartbeat

log = logging.getLogger(__name__)

FIRST_WAIT_S = 1.0  # the first look waits this long at most for the workers' answers to its ping


@dataclass(frozen=True, slots=True)
class WorkerView:
    worker: str
    pool: str
    labels: list[str]
    capacity: dict[str, float]
    concurrency: int
    heard_s_ago: float


@dataclass
class PoolView:
    name: str
    declared: bool  # in the deployment's pools file
    labels: list[str] = field(default_factory=list)
    capacity: dict[str, float] = field(default_factory=dict)  # declared (else what its workers add)
    live_capacity: dict[str, float] = field(default_factory=dict)  # summed over the live workers
    workers: list[WorkerView] = field(default_factory=list)
    queued: int | None = None  # commands waiting for a worker; None: the bus did not say

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class PoolsService:
    def __init__(self, bus: Bus, declared: PoolSet | None, served: tuple[str, ...] = (), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self.declared = declared
        self.served = served  # pools this process runs workers of (known even before they beat)
        self._clock = clock
        self._seen: dict[str, tuple[WorkerHeartbeat, float]] = {}
        self._subscription: Any = None
        self._heard = asyncio.Event()
        self._lock = asyncio.Lock()

    async def _listen(self) -> None:
        async with self._lock:
            if self._subscription is not None:
                return
            self._subscription = await self.bus.subscribe_core(subjects.worker_subject(self.bus.prefix),
                                                               self._on_heartbeat)
            try:
                await self.bus.publish_core(subjects.worker_ping_subject(self.bus.prefix), b"{}")
                await asyncio.wait_for(self._heard.wait(), FIRST_WAIT_S)
            except (BusError, TimeoutError):  # no worker answered yet: the pools show none live
                pass

    async def _on_heartbeat(self, data: bytes) -> None:
        try:
            beat = WorkerHeartbeat.model_validate_json(data)
        except ValueError:
            log.warning("pools: dropping a malformed worker heartbeat (%d bytes)", len(data))
            return
        if beat.stopping:
            self._seen.pop(beat.worker, None)
        else:
            self._seen[beat.worker] = (beat, self._clock())
        self._heard.set()

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # the connection may be gone already
                log.debug("pools: unsubscribing failed: %s", exc)

    async def pools(self) -> list[PoolView]:
        """Every pool: the declared ones in their order, then any other a live worker serves."""
        await self._listen()
        now = self._clock()
        for worker, (_, heard) in list(self._seen.items()):
            if now - heard > DEAD_AFTER_S:
                del self._seen[worker]
        views: dict[str, PoolView] = {}
        for pool in self.declared.pools if self.declared is not None else ():
            views[pool.name] = PoolView(pool.name, True, sorted(pool.labels),
                                        {r: float(u) for r, u in pool.capacity.items()})
        for name in self.served:
            views.setdefault(name, PoolView(name, False))
        for beat, heard in sorted(self._seen.values(), key=lambda item: item[0].worker):
            view = views.setdefault(beat.pool, PoolView(beat.pool, False))
            view.workers.append(WorkerView(beat.worker, beat.pool, sorted(beat.labels), dict(beat.capacity),
                                           beat.concurrency, round(now - heard, 1)))
            for resource, units in beat.capacity.items():
                view.live_capacity[resource] = view.live_capacity.get(resource, 0.0) + units
            if not view.declared:
                view.labels = sorted(set(view.labels) | set(beat.labels))
        try:
            depths = await self.bus.command_queue_depths()
        except BusError as exc:
            log.warning("pools: queue depths unavailable: %s", exc)
            depths = {}
        for view in views.values():
            if not view.declared:
                view.capacity = dict(view.live_capacity)
            view.queued = depths.get(view.name, 0 if depths else None)
        return list(views.values())
