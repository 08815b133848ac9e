"""/api/pools: the worker pools as they are now: declared capacity and labels, the live workers (each one's
capacity, concurrency, labels, seconds since it was last heard) and the commands waiting in each queue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request

from control_plane.api.auth import require
from control_plane.api.context import services_of
from control_plane.api.problems import problem, responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.pools import PoolList

router = APIRouter(tags=["pools"], route_class=AuthorizedRoute)


@router.get("/api/pools", response_model=PoolList,
            summary="Worker pools: capacity, live workers, queued commands",
            responses=responses(401, 403, 503))
async def pools(request: Request, _: Annotated[Any, require("viewer")]) -> Any:
    service = services_of(request).pools
    if service is None:
        return problem(503, code="pools_unavailable", where="control_plane.app",
                       detail="this server was built without the pools service",
                       fix="build ApiServices with pools=...")
    return {"items": [view.as_json() for view in await service.pools()]}
