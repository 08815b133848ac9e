"""Orchestration partitions in Postgres: members, leases, epochs (engine.runtime.ports.PartitionLeases).

Each orchestrator process is a member with a connection of its own, named `noetl-orch:<member id>`:
a member is live while it heartbeats (every tick, `seen_at`) within LEASE_TTL_S and, where Postgres shows
other sessions (pg_stat_activity), while that connection exists, so a killed process's partitions are
free at once instead of after the TTL. A lease lasts LEASE_TTL_S from its last renewal; taking a
partition raises its epoch, which the owner's appends carry (migration 0008, `noetl_check_fence`).
What to take and give is decided by engine/runtime/partitions.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from control_plane.errors import DatabaseUnavailableError
from control_plane.store.db import Database
from engine.protocol.partitions import PARTITIONS
from engine.runtime.partitions import LeaseView

log = logging.getLogger(__name__)

LEASE_TTL_S = 5.0  # a lease not renewed (and a member not heard of) for this long is free to take
APP_PREFIX = "noetl-orch:"
FORGOTTEN_AFTER = "1 day"  # member rows of processes gone this long are deleted

_RENEW: LiteralString = """
UPDATE orchestration_partitions p SET expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
FROM unnest(%(parts)s::integer[], %(epochs)s::bigint[]) AS h(part, epoch)
WHERE p.partition = h.part AND p.epoch = h.epoch AND p.owner = %(me)s
RETURNING p.partition, p.epoch"""

# live members: heard of within the TTL and, when sessions are visible, still connected
_LIVE: LiteralString = """
SELECT o.member_id FROM orchestrators o
WHERE o.seen_at > clock_timestamp() - make_interval(secs => %(ttl)s)
  AND (NOT %(sessions)s OR EXISTS (SELECT 1 FROM pg_stat_activity a
                                   WHERE a.application_name = %(app)s || o.member_id))"""

_TAKE: LiteralString = """
WITH live AS (""" + _LIVE + """)
UPDATE orchestration_partitions p SET owner = %(me)s, epoch = p.epoch + 1, acquired_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
WHERE p.partition = ANY(%(parts)s::integer[])
  AND (p.owner IS NULL OR p.expires_at IS NULL OR p.expires_at <= clock_timestamp()
       OR p.owner NOT IN (SELECT member_id FROM live))
RETURNING p.partition, p.epoch"""


class PartitionLeaseStore:
    """This process's membership and leases, on a dedicated connection."""

    def __init__(self, dsn: str, *, member_id: str | None = None, ttl_s: float = LEASE_TTL_S) -> None:
        self.dsn = dsn
        self.member_id = member_id or uuid.uuid4().hex[:16]
        self.ttl_s = ttl_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._held: dict[int, int] = {}
        self._sessions_visible = False

    @property
    def app_name(self) -> str:
        return APP_PREFIX + self.member_id

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        await self._drop_connection()
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, row_factory=dict_row,
                                                         application_name=self.app_name, connect_timeout=5)
        except psycopg.Error as exc:
            raise DatabaseUnavailableError(f"cannot connect for the orchestration leases: {exc}",
                                           where="orchestration_partitions", transient=True,
                                           fix="check that Postgres runs and NOETL_PG_DSN") from exc
        await conn.execute("INSERT INTO orchestration_partitions (partition) "
                           "SELECT generate_series(0, %s - 1) ON CONFLICT DO NOTHING", (PARTITIONS,))
        cur = await conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s",
                                 (self.app_name,))
        row = await cur.fetchone()
        self._sessions_visible = bool(row and row["n"])
        if not self._sessions_visible:
            log.warning("Postgres does not show this connection in pg_stat_activity (a pooler in between?): "
                        "an orchestrator that dies is noticed after %.0f s, when its lease expires",
                        self.ttl_s)
        self._conn = conn
        return conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    def _params(self, **more: Any) -> dict[str, Any]:
        return {"me": self.member_id, "ttl": self.ttl_s, "sessions": self._sessions_visible,
                "app": APP_PREFIX, **more}

    async def view(self) -> LeaseView:
        try:
            return await self._view()
        except psycopg.Error as exc:
            await self._drop_connection()
            raise DatabaseUnavailableError(f"reading the orchestration leases failed: {exc}",
                                           where="orchestration_partitions", transient=True,
                                           fix="check that Postgres runs") from exc
        except BaseException:  # cancelled mid-transaction (a timeout): the connection's state is unknown
            await self._drop_connection()
            raise

    async def _view(self) -> LeaseView:
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO orchestrators (member_id, host, pid) VALUES (%s, %s, %s) "
                "ON CONFLICT (member_id) DO UPDATE SET seen_at = clock_timestamp()",
                (self.member_id, socket.gethostname(), os.getpid()))
            parts = sorted(self._held)
            cur = await conn.execute(_RENEW, self._params(parts=parts, epochs=[self._held[p] for p in parts]))
            self._held = {row["partition"]: row["epoch"] for row in await cur.fetchall()}
            cur = await conn.execute(_LIVE, self._params())
            members = sorted(row["member_id"] for row in await cur.fetchall())
            cur = await conn.execute("SELECT partition, owner FROM orchestration_partitions "
                                     "WHERE owner IS NOT NULL AND expires_at > clock_timestamp()")
            owners: dict[int, str | None] = dict.fromkeys(range(PARTITIONS))
            for row in await cur.fetchall():
                if row["owner"] in members and row["partition"] in owners:
                    owners[row["partition"]] = row["owner"]
            await conn.execute("DELETE FROM orchestrators WHERE seen_at < clock_timestamp() - %s::interval",
                               (FORGOTTEN_AFTER,))
        return LeaseView(me=self.member_id, members=members, owners=owners)

    async def held(self) -> dict[int, int]:
        return dict(self._held)

    async def take(self, partitions: Iterable[int]) -> dict[int, int]:
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        conn = await self._connection()
        try:
            cur = await conn.execute(_TAKE, self._params(parts=wanted))
            taken = {row["partition"]: row["epoch"] for row in await cur.fetchall()}
        except psycopg.Error as exc:
            await self._drop_connection()
            raise DatabaseUnavailableError(f"taking orchestration partitions failed: {exc}",
                                           where="orchestration_partitions", transient=True,
                                           fix="check that Postgres runs") from exc
        except BaseException:  # cancelled (a timeout): whether the update committed is unknown; the
            await self._drop_connection()  # partitions, if taken, expire unrenewed (renewal needs the epoch)
            raise
        self._held.update(taken)
        if taken:
            log.info("this orchestrator (%s) took partitions %s", self.member_id, sorted(taken))
        return taken

    async def give(self, partitions: Iterable[int]) -> None:
        given = sorted(set(partitions) & set(self._held))
        if not given:
            return
        for partition in given:
            self._held.pop(partition, None)
        conn = await self._connection()
        try:
            await conn.execute("UPDATE orchestration_partitions SET owner = NULL, expires_at = NULL "
                               "WHERE owner = %s AND partition = ANY(%s::integer[])", (self.member_id, given))
        except psycopg.Error as exc:  # the leases expire by themselves
            await self._drop_connection()
            log.warning("releasing partitions %s failed (%s); they are free once their leases expire",
                        given, exc)
            return
        log.info("this orchestrator (%s) gave up partitions %s", self.member_id, given)

    async def leave(self) -> None:
        await self.give(list(self._held))
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                await self._conn.execute("DELETE FROM orchestrators WHERE member_id = %s", (self.member_id,))
        await self._drop_connection()

    async def owners(self) -> dict[int, dict[str, Any]]:
        """Each partition's owner, epoch and expiry (for status pages and tests)."""
        conn = await self._connection()
        cur = await conn.execute("SELECT partition, owner, epoch, expires_at, "
                                 "expires_at > clock_timestamp() AS current FROM orchestration_partitions "
                                 "ORDER BY partition")
        return {row["partition"]: dict(row) for row in await cur.fetchall()}


class PartitionTable:
    """The members and the partitions' leases as they are now, read through the store's pool (the API)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def members(self, ttl_s: float = LEASE_TTL_S) -> list[dict[str, Any]]:
        """Each member heard of within a day: id, host, pid, when it started, seconds since its last
        heartbeat, whether it is live, and the partitions it holds by a current lease."""
        rows = await self._db.fetch_all(
            "SELECT o.member_id, o.host, o.pid, o.started_at, "
            "extract(epoch FROM clock_timestamp() - o.seen_at)::float8 AS seen_s_ago, "
            "coalesce(array_agg(p.partition ORDER BY p.partition) FILTER (WHERE p.partition IS NOT NULL), "
            "'{}') AS partitions "
            "FROM orchestrators o LEFT JOIN orchestration_partitions p "
            "ON p.owner = o.member_id AND p.expires_at > clock_timestamp() "
            "GROUP BY o.member_id ORDER BY o.started_at, o.member_id")
        return [{**row, "live": row["seen_s_ago"] < ttl_s} for row in rows]
