"""The event log's history for the insights (agents/insights/): the rows of recent executions' step runs,
and what the triggers' firings did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_plane.store import Store

MAX_EXECUTIONS = 2000  # the newest executions of the window read at most


class InsightsHistory:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def history(self, *, since: datetime, until: datetime, path: str | None = None,
                      executions: int = MAX_EXECUTIONS) -> list[dict[str, Any]]:
        return await self._store.insights.history(since=since, until=until, path=path, executions=executions)

    async def trigger_outcomes(self, *, since: datetime, until: datetime,
                               path: str | None = None) -> list[dict[str, Any]]:
        """What the triggers' firings did in the window (docs/triggers.md), by trigger, outcome and reason."""
        return await self._store.triggers.outcomes(since=since, until=until, path=path)
