"""/ui/executions: the list with its filters; /ui/executions/live: its rows' status as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from control_plane.api.context import services_of
from control_plane.console.live import stream as live_stream
from control_plane.console.render import page, when
from control_plane.console.session import ConsoleRoute, viewer_of
from control_plane.services.executions import STATUSES
from control_plane.services.sessions import CONSOLE_ROOT
from control_plane.store.executions import Execution

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 50
LIVE_POLL_S = 1.0  # how often the live list reads the executions again
KEEPALIVE_EVERY = 15  # polls without a change between two keepalive comments
Status = Annotated[str | None, Query(max_length=200)]
PathFilter = Annotated[str | None, Query(max_length=1000)]


def row(execution: Execution) -> dict[str, Any]:
    """What the list shows of an execution (and what the live stream sends for it)."""
    return {"execution_id": execution.execution_id, "path": execution.playbook_path,
            "version": execution.playbook_version, "status": execution.status,
            "created_at": execution.created_at.isoformat(),
            "ended_at": execution.ended_at.isoformat() if execution.ended_at else None,
            "started": when(execution.created_at), "ended": when(execution.ended_at),
            "url": f"{CONSOLE_ROOT}/executions/{execution.execution_id}"}


@router.get(f"{CONSOLE_ROOT}/executions")
async def executions(request: Request, status: Status = None, path: PathFilter = None,
                     cursor: Annotated[str | None, Query(max_length=1000)] = None) -> Response:
    viewer = await viewer_of(request)
    listed = await services_of(request).executions.list(path=path or None, status=status or None,
                                                        limit=PAGE_SIZE, cursor=cursor or None)
    query = {k: v for k, v in (("status", status), ("path", path)) if v}
    return page("executions.html", {
        "viewer": viewer, "active": "executions", "rows": [row(e) for e in listed.items],
        "statuses": STATUSES, "status": status or "", "path": path or "", "next_cursor": listed.next_cursor,
        "filters": query, "cursor": cursor or ""})


@router.get(f"{CONSOLE_ROOT}/executions/live")
async def live(request: Request, status: Status = None, path: PathFilter = None) -> Response:
    """`event: execution` with a row (as JSON) whenever a listed execution is new or its status changed;
    `event: signed-out` (then the end) once the session ended."""
    viewer = await viewer_of(request)
    service = services_of(request).executions
    await service.list(status=status or None, limit=1)  # an unknown status: refused before the stream
    seen: dict[str, tuple[str, str | None]] = {}
    quiet = 0

    async def read() -> AsyncIterator[bytes]:
        nonlocal quiet
        listed = await service.list(path=path or None, status=status or None, limit=PAGE_SIZE)
        changed = False
        for execution in reversed(listed.items):
            item = row(execution)
            state = (item["status"], item["ended_at"])
            if seen.get(item["execution_id"]) != state:
                seen[item["execution_id"]] = state
                changed = True
                yield f"event: execution\ndata: {json.dumps(item)}\n\n".encode()
        quiet = 0 if changed else quiet + 1
        if quiet >= KEEPALIVE_EVERY:
            quiet = 0
            yield b": keepalive\n\n"

    return live_stream(request, viewer, LIVE_POLL_S, read)
