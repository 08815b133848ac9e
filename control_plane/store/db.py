"""The Postgres connection pool (psycopg 3 async + psycopg-pool) and transaction helpers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from control_plane.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[DictRow]
_LOST_STATES = ("57P01", "57P02", "57P03")  # admin shutdown, crash shutdown, cannot connect now
_PASSING = ("starting up", "shutting down", "recovery", "too many", "connection slots")  # FATAL, but brief
Params = Sequence[Any] | dict[str, Any] | None
Query = LiteralString | sql.SQL | sql.Composed  # what the driver's execute() takes (psycopg.abc.Query)


def driver_reason(exc: BaseException) -> str:
    """The driver's reason in a few words ("Connection refused"), not its whole paragraph."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line.rsplit("failed: ", 1)[-1].removeprefix("FATAL:").strip() or line


def quiet_pool_warnings() -> None:
    """Hold back the pool's own warnings about lost and refused connections, for a command line that
    reports an outage itself in one line (noetl.outage); servers keep them in their logs."""
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


async def _why_unreachable(dsn: str, timeout: float) -> tuple[str, bool]:
    """(reason, transient) of a failing connection, from one attempt of our own: the pool only logs it.
    Postgres answering FATAL (a wrong password, no such database) is not transient, unless it is
    starting up, shutting down or full."""
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        text = str(exc)
        return driver_reason(exc), "FATAL:" not in text or any(word in text for word in _PASSING)
    await conn.close()
    return "no connection within the time allowed", True


def _lost(conn: Connection, exc: psycopg.OperationalError) -> bool:
    """The statement failed because the connection is gone (a server killed or restarted)."""
    return conn.broken or (exc.sqlstate or "").startswith("08") or exc.sqlstate in _LOST_STATES


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    if "password" in parts:
        parts["password"] = "***"
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


class Database:
    """A pool of autocommit connections returning rows as dicts; `transaction()` for atomic work.

    Open it with `await Database.open(dsn)` (or `async with await Database.open(dsn) as db`).
    """

    def __init__(self, pool: AsyncConnectionPool[Connection], dsn: str) -> None:
        self._pool = pool
        self._where = redact_dsn(dsn)

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 10,
                   timeout: float = 10.0) -> Database:
        """Connect `min_size` connections now; raise DatabaseUnavailableError if Postgres is unreachable."""
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            dsn, min_size=min_size, max_size=max_size, timeout=timeout, open=False, name="noetl",
            kwargs={"autocommit": True, "row_factory": dict_row},
            # no per-checkout check: it costs a round trip on every append; a connection broken by a
            # database restart fails its statement, the caller retries, and the pool replaces it
        )
        db = cls(pool, dsn)
        try:
            await pool.open(wait=True, timeout=timeout)
        except PoolTimeout as exc:
            await pool.close()
            reason, transient = await _why_unreachable(dsn, timeout)
            raise DatabaseUnavailableError(
                f"could not connect to Postgres within {timeout:g}s: {reason}", where=db._where,
                fix="check that the server is running and that NOETL_PG_DSN (host, port, user, "
                    "password, database) is right", transient=transient, reason=reason) from exc
        log.debug("connected to %s (pool %d..%d)", db._where, min_size, max_size)
        return db

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection in autocommit mode (each statement commits on its own). A statement that
        fails because the connection was lost raises DatabaseUnavailableError (transient)."""
        try:
            conn = await self._pool.getconn()
        except PoolTimeout as exc:
            raise DatabaseUnavailableError(
                "no Postgres connection became available in time", where=self._where,
                fix="check that the server is up, or raise the pool's max_size",
                reason="no connection available") from exc
        try:
            yield conn
        except psycopg.OperationalError as exc:
            if not _lost(conn, exc):
                raise
            reason = driver_reason(exc)
            raise DatabaseUnavailableError(
                f"the connection to Postgres was lost: {reason}", where=self._where,
                fix="check that the server is running; the call can be made again once it answers",
                reason=reason) from exc
        finally:
            await self._pool.putconn(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside one transaction: committed on exit, rolled back on error."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetch_all(self, query: Query, params: Params = None) -> list[DictRow]:
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def fetch_one(self, query: Query, params: Params = None) -> DictRow | None:
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

    async def ping(self) -> bool:
        """True when Postgres answers a trivial query (raises, as any query does, when it cannot)."""
        return await self.fetch_one("SELECT 1 AS ok") is not None

    async def execute(self, query: Query, params: Params = None) -> int:
        """Run one statement; return the number of rows it affected."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return cur.rowcount
