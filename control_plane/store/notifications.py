"""Wake-ups for new events: one LISTEN connection on `noetl_events`, shared by every follower."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict

import psycopg

from control_plane.store.events import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class EventNotifications:
    """`await wait(execution_id, timeout_s)` returns when that execution stored new events (or on
    timeout: a missed notification only delays a follower, which re-reads the log anyway)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self, timeout_s: float = 10.0) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def wait(self, execution_id: str, timeout_s: float) -> None:
        event = asyncio.Event()
        self._waiters[execution_id].add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout_s)
        finally:
            waiters = self._waiters.get(execution_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[execution_id]

    def _wake(self, payload: str) -> None:
        try:
            execution_id = str(json.loads(payload)["execution_id"])
        except (ValueError, KeyError, TypeError):
            return
        for event in self._waiters.get(execution_id, ()):
            event.set()

    async def _listen(self) -> None:
        while True:  # reconnect after a database restart; followers poll meanwhile
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged, retried
                self._listening.clear()
                log.warning("listening for new events failed (%s); retrying in 1 s", type(exc).__name__)
                for waiters in list(self._waiters.values()):  # let followers re-read meanwhile
                    for event in waiters:
                        event.set()
                await asyncio.sleep(1.0)
