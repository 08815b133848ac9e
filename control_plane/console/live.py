"""The console's live pages' Server-Sent Events: a page's reading, again every few seconds, for as long as
its session lasts (`event: signed-out`, then the end, once it ended) and the server serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from control_plane.console.session import Viewer, sessions_of
from control_plane.errors import UnauthorizedError

SIGNED_OUT = b"event: signed-out\ndata: {}\n\n"


def stream(request: Request, viewer: Viewer, poll_s: float,
           read: Callable[[], AsyncIterator[bytes]]) -> StreamingResponse:
    """`read()`'s messages every `poll_s` while the viewer's session lasts."""
    stopping: asyncio.Event = request.app.state.stopping

    async def body() -> AsyncIterator[bytes]:
        while not stopping.is_set():
            try:
                await sessions_of(request).current(viewer.session_id)
            except UnauthorizedError:
                yield SIGNED_OUT
                return
            async for message in read():
                yield message
            try:
                await asyncio.wait_for(stopping.wait(), poll_s)
            except TimeoutError:
                pass

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
