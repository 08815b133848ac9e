"""One orchestrator at a time per database: leadership is a Postgres session advisory lock.

Several processes may host an orchestrator (`noetl run`, `noetl server start`, a second server for
fail-over); only the one holding the lock consumes events. When it exits, its connection closes, the
lock is released, and a waiting process takes over and resumes from the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

log = logging.getLogger(__name__)

LOCK_KEY = 0x6E6F65746C6F7263  # "noetlorc": not the migration lock's key


class Leadership:
    def __init__(self, dsn: str, *, key: int = LOCK_KEY, poll_s: float = 0.5) -> None:
        self.dsn = dsn
        self.key = key
        self.poll_s = poll_s
        self._conn: psycopg.AsyncConnection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def try_acquire(self) -> bool:
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cur.fetchone()
        if row and row[0]:
            self._conn = conn
            return True
        await conn.close()
        return False

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process leads (True) or `stop` is set (False)."""
        while not stop.is_set():
            if await self.try_acquire():
                log.info("this process now runs the orchestrator")
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
        return False

    async def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
