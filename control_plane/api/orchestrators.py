"""/api/orchestrators: the orchestrator processes and the partitions of the executions each runs now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from control_plane.api.auth import require
from control_plane.api.context import built_with, services_of
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.orchestrators import OrchestratorList

router = APIRouter(tags=["orchestrators"], route_class=AuthorizedRoute)


@router.get("/api/orchestrators", response_model=OrchestratorList,
            summary="Orchestrator processes and the partitions each owns",
            responses=responses(401, 403, 503))
async def orchestrators(request: Request, _: Annotated[Any, require("viewer")]) -> Any:
    return await built_with(services_of(request).orchestrators, "orchestrators").view()
