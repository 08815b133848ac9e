"""The event log as the insights read it: the events of recent executions that say when each step run was
scheduled, waited, started and ended (read-only; agents/insights/ turns them into figures)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_plane.store.db import Database

_HISTORY = """
WITH scoped AS (
    SELECT execution_id, playbook_path, playbook_version, status, created_at, ended_at
    FROM executions
    WHERE (%(path)s::text IS NULL OR playbook_path = %(path)s) AND created_at >= %(since)s
      AND created_at < %(until)s AND (%(children)s OR parent_execution_id IS NULL)
    ORDER BY created_at DESC LIMIT %(executions)s)
SELECT e.execution_id, s.playbook_path AS path, s.playbook_version AS version, e.seq, e.type, e.step,
       e.loop_index, e.body->>'command_id' AS command_id, (e.body->>'timestamp')::timestamptz AS at,
       e.body->>'pool' AS pool, e.body->>'worker' AS worker,
       coalesce((e.body->>'attempt')::int, (e.body->'result'->'meta'->>'attempt')::int) AS attempt,
       (e.body->>'duration_ms')::float8 AS duration_ms,
       e.body->'result'->'error'->>'kind' AS error_kind,
       e.body->'result'->'error'->>'message' AS error_message,
       CASE WHEN e.type IN ('step.deferred', 'step.dispatched') THEN e.body->'payload'->'commands'
            WHEN e.type = 'policy.applied' THEN e.body->'payload'->'versions'
            WHEN e.type IN ('execution.failed', 'execution.cancelled') THEN e.body->'payload'->'error'
       END AS detail
FROM events e JOIN scoped s USING (execution_id)
WHERE e.type IN ('execution.started', 'execution.completed', 'execution.failed', 'execution.cancelled',
                 'policy.applied', 'step.scheduled', 'step.deferred', 'step.dispatched', 'step.started',
                 'step.succeeded', 'step.failed', 'loop.item.succeeded', 'loop.item.failed')
  AND NOT (e.type = 'step.started' AND e.derived)
ORDER BY e.execution_id, e.seq"""


class InsightsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, *, since: datetime, until: datetime, path: str | None = None,
                      executions: int = 2000, children: bool = False) -> list[dict[str, Any]]:
        """The events the insights read, of the newest `executions` executions created in [since, until)
        (of `path` when given; top-level ones only unless `children`), in log order per execution."""
        rows = await self._db.fetch_all(_HISTORY, {"path": path, "since": since, "until": until,
                                                   "executions": executions, "children": children})
        return [dict(row) for row in rows]
