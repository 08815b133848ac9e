"""/ui/pools: the worker pools and live workers as they are now (the PoolsService GET /api/pools reads);
/ui/pools/live: the same, read again every few seconds, as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from control_plane.api.context import built_with, services_of
from control_plane.console.live import stream as live_stream
from control_plane.console.render import page
from control_plane.console.session import ConsoleRoute, viewer_of
from control_plane.services.pools import PoolsService, PoolView
from control_plane.services.sessions import CONSOLE_ROOT

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

LIVE_POLL_S = 2.0  # how often the live page reads the pools again


def pools_of(request: Request) -> PoolsService:
    return built_with(services_of(request).pools, "pools")


def amounts(units: Mapping[str, float]) -> str:
    """`{"cpu": 2.0, "gpu": 0.5}` -> `cpu 2, gpu 0.5`; `-` when empty."""
    return ", ".join(f"{r} {u:g}" for r, u in units.items()) or "-"


def pool_row(view: PoolView) -> dict[str, Any]:
    """What the page shows of a pool (and what the live stream sends for it), as text."""
    undeclared = "" if view.declared else " (not declared: its live workers')"
    return {"name": view.name, "declared": view.declared, "capacity": amounts(view.capacity) + undeclared,
            "labels": ", ".join(view.labels) or "-", "live_capacity": amounts(view.live_capacity),
            "queued": "unknown (the bus did not say)" if view.queued is None else str(view.queued),
            "workers": [{"worker": w.worker, "capacity": amounts(w.capacity),
                         "concurrency": str(w.concurrency), "labels": ", ".join(w.labels) or "-",
                         "heard": f"{w.heard_s_ago:.1f} s ago"}
                        for w in view.workers]}


@router.get(f"{CONSOLE_ROOT}/pools")
async def pools(request: Request) -> Response:
    viewer = await viewer_of(request)
    rows = [pool_row(v) for v in await pools_of(request).pools()]
    return page("pools.html", {"viewer": viewer, "active": "pools", "pools": rows,
                               "at": datetime.now().astimezone().strftime("%H:%M:%S")})


@router.get(f"{CONSOLE_ROOT}/pools/live")
async def live(request: Request) -> Response:
    """`event: pools` with every pool (as JSON) every LIVE_POLL_S; `event: signed-out` (then the end) once
    the session ended."""
    viewer = await viewer_of(request)
    service = pools_of(request)

    async def read() -> AsyncIterator[bytes]:
        rows = [pool_row(v) for v in await service.pools()]
        at = datetime.now().astimezone().strftime("%H:%M:%S")
        yield f"event: pools\ndata: {json.dumps({'pools': rows, 'at': at})}\n\n".encode()

    return live_stream(request, viewer, LIVE_POLL_S, read)
