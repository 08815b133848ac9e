"""How long each step of a playbook took in past executions: the planner's durations.

Read-only over the event log: the median `duration_ms` of the step's successful runs (`step.succeeded`,
or per item `loop.item.succeeded` for a loop step), over the most recent executions of the catalog path.
"""

from __future__ import annotations

from control_plane.store.db import Database

_MEDIANS = """
WITH recent AS (
    SELECT execution_id FROM executions WHERE playbook_path = %(path)s
    ORDER BY created_at DESC LIMIT %(executions)s
)
SELECT e.step AS step,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (e.body->>'duration_ms')::float8) AS median_ms,
       count(*) AS runs
FROM events e JOIN recent r ON r.execution_id = e.execution_id
WHERE e.type IN ('step.succeeded', 'loop.item.succeeded')
  AND e.step IS NOT NULL AND NOT e.derived
  AND jsonb_typeof(e.body->'duration_ms') = 'number'
GROUP BY e.step
"""


async def step_duration_medians(db: Database, playbook_path: str, *,
                                executions: int = 200) -> dict[str, float]:
    """step -> median ms of its successful runs in the last `executions` executions of `playbook_path`."""
    rows = await db.fetch_all(_MEDIANS, {"path": playbook_path, "executions": executions})
    return {str(r["step"]): float(r["median_ms"]) for r in rows if r["median_ms"] is not None}
