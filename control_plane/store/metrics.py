"""The counts behind the Prometheus metrics, read from the event log at scrape time."""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.store.db import Database

DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_EXECUTIONS_SQL = "SELECT status, count(*) AS n FROM executions GROUP BY status"
_STEPS_SQL = "SELECT type, count(*) AS n FROM events WHERE type = ANY(%s) GROUP BY type"
_ERRORS_SQL = ("SELECT coalesce(body->'result'->'error'->>'kind', 'unknown') AS kind, count(*) AS n "
               "FROM events WHERE type = ANY(%s) GROUP BY 1")
_DURATIONS_SQL = ("SELECT " + ", ".join(f"count(*) FILTER (WHERE d <= {b})" + f" AS b{i}"
                                        for i, b in enumerate(DURATION_BUCKETS_S))
                  + ", count(*) AS n, coalesce(sum(d), 0) AS total FROM ("
                  "SELECT (body->>'duration_ms')::float8 / 1000.0 AS d FROM events "
                  "WHERE type IN ('step.succeeded', 'step.failed', 'loop.item.succeeded', "
                  "'loop.item.failed') "
                  "AND body ? 'duration_ms' AND body->>'duration_ms' IS NOT NULL) s")


class MetricsStore:
    """Aggregates over the executions and events tables (all read-only)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def executions_by_status(self) -> dict[str, int]:
        """status -> executions stored with it."""
        return {r["status"]: int(r["n"]) for r in await self._db.fetch_all(_EXECUTIONS_SQL)}

    async def count_by_type(self, types: Sequence[str]) -> dict[str, int]:
        """event type -> events of it, for the types in `types` (absent: none recorded)."""
        return {r["type"]: int(r["n"]) for r in await self._db.fetch_all(_STEPS_SQL, (list(types),))}

    async def error_kinds(self, types: Sequence[str]) -> dict[str, int]:
        """error kind ('unknown' when unnamed) -> events of the given types carrying it."""
        return {r["kind"]: int(r["n"]) for r in await self._db.fetch_all(_ERRORS_SQL, (list(types),))}

    async def step_durations(self) -> tuple[list[int], int, float] | None:
        """(cumulative count per DURATION_BUCKETS_S bucket, count, sum of seconds) of the step and loop
        item outcomes that carry a duration."""
        row = await self._db.fetch_one(_DURATIONS_SQL)
        if row is None:
            return None
        return ([int(row[f"b{i}"]) for i in range(len(DURATION_BUCKETS_S))], int(row["n"]),
                float(row["total"]))
