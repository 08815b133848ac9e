"""GET /health: no token needed; 503 (with the same document) when Postgres or NATS is unreachable."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from control_plane.api.context import services_of
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.health import Health

router = APIRouter(tags=["health"], route_class=AuthorizedRoute)


@router.get("/health", response_model=Health, summary="Whether Postgres and NATS are reachable",
            responses={503: {"model": Health, "description": "degraded: Postgres or NATS is unreachable"}})
async def health(request: Request) -> JSONResponse:
    report = await services_of(request).health()
    healthy = report.postgres and report.nats
    body = Health(status="ok" if healthy else "degraded", postgres=report.postgres, nats=report.nats)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
