"""When one execution's events were built and committed: the figures the dispatch benchmarks read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import DictRow

from control_plane.store.db import Database

_SPAN_SQL = ("SELECT type, recorded_at FROM events WHERE execution_id = %s "
             "AND type IN ('execution.started', 'execution.completed')")
_COUNT_SQL = "SELECT count(*) AS n FROM events WHERE execution_id = %s"
_ENDED_SQL = "SELECT ended_at FROM executions WHERE execution_id = %s"
_TERMINAL_SQL = ("SELECT type, body->'payload'->'error' AS error FROM events WHERE execution_id = %s "
                 "AND type IN ('execution.completed', 'execution.failed', 'execution.cancelled')")
_TIMELINE_SQL = """
SELECT step, type, (body->>'timestamp')::timestamptz AS built_at, recorded_at
FROM events WHERE execution_id = %s AND type IN ('step.scheduled', 'step.started', 'step.succeeded')
ORDER BY seq"""


class TimingStore:
    """Small read-only queries on one execution, cheap enough to poll (one row each where possible)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ended_at(self, execution_id: str) -> datetime | None:
        """When the execution ended (None: running, or not stored)."""
        row = await self._db.fetch_one(_ENDED_SQL, (execution_id,))
        return None if row is None else row["ended_at"]

    async def terminal(self, execution_id: str) -> tuple[str, Any] | None:
        """(type, payload error) of its terminal execution event (None: not recorded yet)."""
        row = await self._db.fetch_one(_TERMINAL_SQL, (execution_id,))
        return None if row is None else (str(row["type"]), row["error"])

    async def started_completed(self, execution_id: str) -> dict[str, datetime]:
        """event type -> recorded_at (Postgres clock) of its execution.started and execution.completed."""
        rows = await self._db.fetch_all(_SPAN_SQL, (execution_id,))
        return {row["type"]: row["recorded_at"] for row in rows}

    async def event_count(self, execution_id: str) -> int:
        """How many events the execution has in the log."""
        row = await self._db.fetch_one(_COUNT_SQL, (execution_id,))
        return int(row["n"]) if row else 0

    async def step_timeline(self, execution_id: str) -> list[DictRow]:
        """Rows (step, type, built_at, recorded_at) of its step.scheduled/started/succeeded, in seq order."""
        return await self._db.fetch_all(_TIMELINE_SQL, (execution_id,))
