"""/ui/insights: which steps got slower, the bottlenecks, the anomalies and the failure clusters of a window
(the report GET /api/insights answers: `app.state.insights`), for one playbook or all."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from fastapi import APIRouter, Query, Request, Response

from control_plane.console.render import page
from control_plane.console.session import ConsoleRoute, viewer_of
from control_plane.errors import ControlPlaneError
from control_plane.services.sessions import CONSOLE_ROOT
from engine.errors import NoetlError

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
SPANS = ("24h", "7d", "30d")


class Reporter(Protocol):
    async def report(self, path: str | None = None, since: str | None = None, *,
                     limit: int = 20) -> dict[str, Any]: ...


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def when(value: str | None) -> str:
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


@router.get(f"{CONSOLE_ROOT}/insights")
async def insights(request: Request, path: str | None = Query(None, max_length=500),
                   since: str = Query("7d", max_length=64)) -> Response:
    viewer = await viewer_of(request)
    reporter: Reporter | None = getattr(request.app.state, "insights", None)
    if reporter is None:
        raise ControlPlaneError("insights are not enabled in this server", where="app.state.insights",
                                fix="start the server with the `noetl` command (it enables the insights)")
    error = None
    try:
        report = await reporter.report(path or None, since, limit=50)
    except NoetlError as exc:
        error, report = str(exc), None
    return page("insights.html", {"viewer": viewer, "active": "insights", "report": report, "error": error,
                                  "path": path or "", "since": since, "spans": SPANS, "ms": ms, "when": when})
