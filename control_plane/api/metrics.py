"""GET /metrics: the Prometheus text exposition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response

from control_plane.api.auth import require
from control_plane.api.context import services_of
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.services.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"], route_class=AuthorizedRoute)


@router.get("/metrics", response_class=Response,
            summary="Executions by status, steps by outcome, step durations, queue depth, errors by kind",
            responses={200: {"description": "Prometheus text format 0.0.4",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **responses(401, 403, 503)})
async def metrics(request: Request, _: Annotated[Any, require("viewer")]) -> Response:
    return Response(await services_of(request).metrics.render(), media_type=CONTENT_TYPE)
