"""The embedded stack as its own supervisor: a crashed nats-server or PostgreSQL is started again on its
data directory (nats on the same port, Postgres on the same socket), so every client reconnects to the
address it knows.

Restarts back off (RESTART_BACKOFF_S, doubling up to RESTART_BACKOFF_MAX_S); a server that crashes
MAX_RESTARTS times within CRASH_WINDOW_S is reported `crashed` and left alone until `reset()` (what
`noetl dev up` asks for on a stack with a dead component). In production a server's own supervisor
(systemd, Kubernetes) does this job and the stack is given URLs instead, so nothing here runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

POLL_S = 0.25
RESTART_BACKOFF_S = 0.5
RESTART_BACKOFF_MAX_S = 8.0
MAX_RESTARTS = 5
CRASH_WINDOW_S = 120.0


class Server(Protocol):
    @property
    def pid(self) -> int: ...

    def is_running(self) -> bool: ...


S = TypeVar("S", bound=Server)


@dataclass
class Supervised(Generic[S]):
    """One server (or worker process): how to tell it runs, and how to start it again."""

    name: str
    server: S
    restart: Callable[[S], Awaitable[S]]
    status: str = "up"  # up | restarting | crashed
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)  # monotonic times of the recent ones
    detail: str | None = None
    next_try: float = 0.0
    backoff: float = RESTART_BACKOFF_S

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.server.pid, "status": self.status, "restarts": self.restarts,
                "detail": self.detail}


class ServerSupervisor:
    """Watches servers and starts a dead one again; `on_restart(name, server)` learns of the new one."""

    def __init__(self, on_restart: Callable[[str, Any], None] | None = None) -> None:
        self._watched: dict[str, Supervised[Any]] = {}
        self._on_restart = on_restart
        self._wake = asyncio.Event()
        self.cycles = 0  # rounds of checks done (tests wait on it)

    def watch(self, name: str, server: S, restart: Callable[[S], Awaitable[S]]) -> None:
        """Watch `server`; `restart(old)` starts a new one and returns it once it serves."""
        self._watched[name] = Supervised(name, server, restart)

    def watch_blocking(self, name: str, server: S, restart: Callable[[S], S]) -> None:
        """`watch` with a blocking `restart` (run in a thread)."""
        async def in_thread(old: S) -> S:
            return await asyncio.to_thread(restart, old)
        self.watch(name, server, in_thread)

    def states(self) -> list[dict[str, Any]]:
        return [entry.state() for entry in self._watched.values()]

    def reset(self) -> None:
        """Forget past crashes: a `crashed` server is tried again now."""
        for entry in self._watched.values():
            entry.crashes.clear()
            entry.backoff = RESTART_BACKOFF_S
            entry.next_try = 0.0
            if entry.status == "crashed":
                entry.status = "restarting"
        self._wake.set()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        if ready is not None:
            ready.set()
        while not stop.is_set():
            for entry in list(self._watched.values()):
                if stop.is_set():
                    break
                await self._check(entry)
            self.cycles += 1
            self._wake.clear()
            stopping = asyncio.ensure_future(stop.wait())
            waking = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({stopping, waking}, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            waking.cancel()

    async def _check(self, entry: Supervised[Any]) -> None:
        now = time.monotonic()
        if entry.status == "up":
            if entry.server.is_running():
                return
            entry.crashes = [t for t in entry.crashes if now - t < CRASH_WINDOW_S] + [now]
            if len(entry.crashes) > MAX_RESTARTS:
                entry.status = "crashed"
                entry.detail = (f"exited {len(entry.crashes)} times within {CRASH_WINDOW_S:.0f} s; not "
                                "restarted again (see its log; `noetl dev up` tries again)")
                log.error("%s (pid %s) keeps crashing: %s", entry.name, entry.server.pid, entry.detail)
                return
            log.warning("%s (pid %s) is not running; starting it again", entry.name, entry.server.pid)
            entry.status, entry.next_try = "restarting", now
        if entry.status != "restarting" or now < entry.next_try:
            return
        try:
            server = await entry.restart(entry.server)
        except Exception as exc:  # e.g. the old server's processes still hold its port or memory
            entry.detail = f"restart failed: {exc}"
            entry.next_try = time.monotonic() + entry.backoff
            log.warning("%s did not start again (%s); next try in %.1f s", entry.name, exc, entry.backoff)
            entry.backoff = min(entry.backoff * 2, RESTART_BACKOFF_MAX_S)
            return
        entry.server, entry.status, entry.detail = server, "up", None
        entry.restarts += 1
        entry.backoff = RESTART_BACKOFF_S
        log.warning("%s is running again (pid %s)", entry.name, server.pid)
        if self._on_restart is not None:
            self._on_restart(entry.name, server)
