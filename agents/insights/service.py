"""`noetl insights`, GET /api/insights and the MCP tool: one report over the history of a window.

Per playbook and step: p50/p95 durations and their trend, queueing versus run time, retry and failure
rates; the bottlenecks (the steps that dominate their executions' critical paths); anomalies (runs out of
their own history, with the reason); failure clusters (one problem seen many times, with the release it
came in); the triggers whose firings were skipped or failed, and why. The history comes from the control
plane's InsightsHistory; the figures are the pure modules'.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from agents.insights import anomalies, clusters, durations
from agents.insights.history import fold
from agents.insights.triggers import trigger_figures
from agents.insights.window import since_time


class HistorySource(Protocol):
    async def history(self, *, since: datetime, until: datetime, path: str | None = None,
                      executions: int = ...) -> list[dict[str, Any]]: ...

    async def trigger_outcomes(self, *, since: datetime, until: datetime,
                               path: str | None = None) -> list[dict[str, Any]]: ...


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _json(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class InsightsService:
    """`embed`: the embeddings model of similar failures, when this process has it loaded: failure
    signatures are then merged by the cosine of their embeddings, else by their words."""

    def __init__(self, history: HistorySource, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 embed: clusters.Embed | None = None) -> None:
        self._history = history
        self._clock = clock
        self._similarity: clusters.Similarity
        if embed is None:
            self._similarity, self._threshold = clusters.words_alike, clusters.SIMILAR
        else:
            self._similarity = clusters.embedding_similarity(embed)
            self._threshold = clusters.SIMILAR_EMBEDDED

    async def report(self, path: str | None = None, since: str | None = None, *,
                     limit: int = 20, detail: bool = False) -> dict[str, Any]:
        """The report of the window from `since` (default 7 days) to now, of `path` or every playbook;
        `detail`: each cluster with the ids of its executions."""
        now = self._clock()
        start = since_time(since, now)
        rows = await self._history.history(since=start, until=now, path=path)
        fired = await self._history.trigger_outcomes(since=start, until=now, path=path)
        # the figures are CPU work (and embedding signatures with the model): off the event loop
        report = await asyncio.to_thread(self._report, rows, path, start, now, limit, detail)
        return {**report, "triggers": trigger_figures(fired, top=limit)}

    def _report(self, rows: list[dict[str, Any]], path: str | None, start: datetime, now: datetime,
                limit: int, detail: bool) -> dict[str, Any]:
        executions = fold(rows)
        ended = [e for e in executions if e.status != "running"]
        found = anomalies.anomalies(executions)
        problems = clusters.clusters(executions, similarity=self._similarity, threshold=self._threshold)
        return {
            "path": path, "since": start.isoformat(), "until": now.isoformat(),
            "executions": len(executions),
            "outcomes": {status: sum(1 for e in ended if e.status == status)
                         for status in ("completed", "failed", "cancelled")},
            "steps": _json(durations.step_figures(executions)),
            "bottlenecks": _json(durations.bottlenecks(executions, top=limit)),
            "anomalies": _json(found[:limit]),
            "clusters": [c.as_json(detail=detail) for c in problems[:limit]],
        }
