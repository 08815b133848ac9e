"""One orchestrator at a time per database: leadership is a Postgres session advisory lock.

Several processes may host an orchestrator (`noetl run`, `noetl server start`, a second server for
fail-over); only the one holding the lock consumes events. When it exits, its connection closes, the
lock is released, and a waiting process takes over and resumes from the event log. When Postgres
restarts, the leader takes the lock again (`keep`); should another process have taken it first, the
former leader stops orchestrating and waits.
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
            try:
                if await self.try_acquire():
                    log.info("this process now runs the orchestrator")
                    return True
            except psycopg.Error as exc:  # Postgres away (restarting): ask again
                log.warning("cannot ask for the leader lock (%s); trying again", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
        return False

    async def keep(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        """While this process leads: check the lock's connection every `poll_s`; when it is gone (Postgres
        restarted), take the lock again as soon as Postgres answers. Sets `lost` when another process
        took it first."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
            if stop.is_set() or await self._alive():
                continue
            log.warning("the leader lock's connection to Postgres is gone; taking the lock again")
            await self.release()
            while not stop.is_set():
                try:
                    if await self.try_acquire():
                        log.info("the leader lock is held again")
                        break
                    lost.set()
                    return
                except psycopg.Error as exc:
                    log.warning("Postgres does not answer yet (%s); trying again", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.poll_s)

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            await conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    async def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
