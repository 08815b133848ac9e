"""/api/insights: durations and their trends, bottlenecks, anomalies and failure clusters of a window.

The report is the agents' (agents.insights.service.InsightsService): the control plane sits below the
agents, so the serving process puts it in `app.state.insights` (the `noetl` entry point does). Without
one: 503. The body is the document `noetl insights --json` prints (docs/insights.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query, Request

from control_plane.api.auth import require
from control_plane.api.problems import problem, responses
from control_plane.api.routing import AuthorizedRoute
from engine.errors import NoetlError

router = APIRouter(tags=["insights"], route_class=AuthorizedRoute)


class InsightsReporter(Protocol):
    async def report(self, path: str | None = None, since: str | None = None, *,
                     limit: int = 20) -> dict[str, Any]: ...


@router.get("/api/insights", response_model=dict[str, Any],
            summary="Step durations and trends, bottlenecks, anomalies and failure clusters",
            responses=responses(400, 401, 403, 503))
async def insights(request: Request, _: Annotated[Any, require("viewer")],
                   path: Annotated[str | None, Query(max_length=500, description="one playbook's path")]
                   = None,
                   since: Annotated[str | None, Query(max_length=64, examples=["7d"],
                                                      description="a span (7d, 24h, 90m) or an ISO time")]
                   = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 20) -> Any:
    reporter: InsightsReporter | None = getattr(request.app.state, "insights", None)
    if reporter is None:
        return problem(503, code="insights_unavailable", detail="insights are not enabled in this server",
                       where="app.state.insights",
                       fix="start the server with the `noetl` command (it enables the insights)")
    try:
        return await reporter.report(path, since, limit=limit)
    except NoetlError as exc:
        return problem(400, code=exc.code, detail=exc.message, where=exc.where or "query", fix=exc.fix)
