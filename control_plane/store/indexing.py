"""What the event-log indexer reads: ended executions in end order, their events, and later runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.rows import DictRow

from control_plane.store.db import Database
from engine.protocol.events import Event

_ROW = ("execution_id, playbook_path, playbook_version, status, parent_execution_id, parent_step, "
        "created_at, ended_at, playbook_text")
_ENDED_SQL = (f"SELECT {_ROW} FROM executions WHERE ended_at IS NOT NULL AND ended_at > %s "
              "AND NOT (execution_id = ANY(%s)) ORDER BY ended_at, execution_id LIMIT %s")
_ENDED_FIRST_SQL = (f"SELECT {_ROW} FROM executions WHERE ended_at IS NOT NULL "
                    "ORDER BY ended_at, execution_id LIMIT %s")
_ONE_SQL = f"SELECT {_ROW} FROM executions WHERE execution_id = %s"
_EVENTS_SQL = ("SELECT execution_id, (body || jsonb_build_object('seq', seq))::text AS event FROM events "
               "WHERE execution_id = ANY(%s) ORDER BY execution_id, seq")
# for each (execution, step): the first ended execution of the same playbook created after it, and the
# last outcome of that step in it
_LATER_SQL = """
SELECT q.execution_id, q.step, n.execution_id AS later_execution_id, n.status AS later_status,
       n.step_outcome AS later_step_outcome
FROM unnest(%s::text[], %s::text[]) AS q(execution_id, step)
JOIN executions x ON x.execution_id = q.execution_id
LEFT JOIN LATERAL (
    SELECT e.execution_id, e.status,
           (SELECT ev.type FROM events ev WHERE ev.execution_id = e.execution_id AND ev.step = q.step
                AND ev.type IN ('step.succeeded', 'step.failed') ORDER BY ev.seq DESC LIMIT 1) AS step_outcome
    FROM executions e
    WHERE e.playbook_path = x.playbook_path AND e.ended_at IS NOT NULL
      AND (e.created_at, e.execution_id) > (x.created_at, x.execution_id)
    ORDER BY e.created_at, e.execution_id LIMIT 1
) n ON true"""


class IndexingStore:
    """Read-only queries behind control_plane.services.indexing.IndexingFeed (rows hold the columns of
    `_ROW`; the feed turns them into EndedExecution)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def ended_first(self, limit: int) -> list[DictRow]:
        """The first `limit` ended executions, by (ended_at, execution_id)."""
        return await self._db.fetch_all(_ENDED_FIRST_SQL, (limit,))

    async def ended_since(self, since: datetime, skip: Sequence[str], limit: int) -> list[DictRow]:
        """Up to `limit` executions that ended after `since`, leaving out the ids in `skip`."""
        return await self._db.fetch_all(_ENDED_SQL, (since, list(skip), limit))

    async def execution(self, execution_id: str) -> DictRow | None:
        """One execution's row, ended or not (None: not stored)."""
        return await self._db.fetch_one(_ONE_SQL, (execution_id,))

    async def events_of(self, execution_ids: Sequence[str]) -> dict[str, list[Event]]:
        """Each execution's events in seq order ([] for an id without events)."""
        events: dict[str, list[Event]] = {key: [] for key in execution_ids}
        for row in await self._db.fetch_all(_EVENTS_SQL, (list(execution_ids),)):
            events[row["execution_id"]].append(Event.model_validate_json(row["event"]))
        return events

    async def later_runs(self, execution_ids: Sequence[str], steps: Sequence[str | None]) -> list[DictRow]:
        """For each (execution_ids[i], steps[i]): the next ended run of the same playbook (later_execution_id,
        later_status) and the step's last outcome event type there (later_step_outcome)."""
        return await self._db.fetch_all(_LATER_SQL, (list(execution_ids), list(steps)))
