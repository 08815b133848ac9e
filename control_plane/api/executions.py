"""/api/execute and /api/executions: start, list, one with its steps, events, the live stream, cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from control_plane.api.auth import require
from control_plane.api.context import services_of
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.errors import InvalidArgumentError
from control_plane.schemas.executions import (
    MAX_SEQ,
    Cancelling,
    EventPage,
    ExecuteRequest,
    ExecutionDetail,
    ExecutionInfo,
    ExecutionPage,
    Started,
    StepState,
)
from engine.protocol.events import TERMINAL_EVENTS, Event

router = APIRouter(tags=["executions"], route_class=AuthorizedRoute)

KEEPALIVE_S = 15.0
_ENDED = frozenset(e.split(".", 1)[1] for e in TERMINAL_EVENTS)
ExecutionId = Annotated[str, Path(min_length=1, max_length=200, examples=["2241043291894150228"],
                                   description="the execution id: the decimal digits of a positive 64-bit "
                                               "integer (spec 13)")]
AfterSeq = Annotated[int, Query(ge=0, le=MAX_SEQ, description="only events with a greater seq")]


def _info(execution: Any) -> dict[str, Any]:
    return {"execution_id": execution.execution_id, "path": execution.playbook_path,
            "version": execution.playbook_version, "status": execution.status,
            "payload": execution.payload, "parent_execution_id": execution.parent_execution_id,
            "parent_step": execution.parent_step, "last_seq": execution.last_seq,
            "created_at": execution.created_at, "updated_at": execution.updated_at,
            "ended_at": execution.ended_at}


@router.post("/api/execute", status_code=201, response_model=Started, summary="Start an execution",
             responses=responses(400, 401, 403, 404, 413, 415, 422, 503))
async def execute(request: Request, _: Annotated[Any, require("operator")], body: ExecuteRequest) -> Started:
    if body.merge is False:
        raise InvalidArgumentError("merge: false (replace the workload) is not supported", where="body.merge",
                                   fix="omit 'merge' or send true: the payload is deep-merged into the "
                                       "playbook's workload")
    services = services_of(request)
    execution_id = await services.executions.start(body.path, version=body.version, payload=body.payload,
                                                   execution_id=body.execution_id)
    execution = await services.executions.get(execution_id)
    return Started(execution_id=execution_id, path=execution.playbook_path,
                   version=execution.playbook_version, status=execution.status)


@router.get("/api/executions", response_model=ExecutionPage, summary="Executions, newest first",
            responses=responses(400, 401, 403, 422, 503))
async def list_executions(
        request: Request, _: Annotated[Any, require("viewer")],
        path: Annotated[str | None, Query(max_length=1000)] = None,
        status: Annotated[str | None, Query(max_length=200, description="a status, or several separated "
                                                                        "by commas")] = None,
        since: Annotated[datetime | None, Query(description="inclusive, ISO 8601 with a zone")] = None,
        until: Annotated[datetime | None, Query(description="exclusive, ISO 8601 with a zone")] = None,
        parent: Annotated[str | None, Query(max_length=200, description="the parent execution")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=1000,
                                            description="the next_cursor of the previous page")] = None,
) -> ExecutionPage:
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and bound.tzinfo is None:
            raise InvalidArgumentError(f"'{name}' has no time zone", where=name,
                                       fix="add one, e.g. 2026-01-02T03:04:05Z or +02:00")
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
    page = await services_of(request).executions.list(
        path=path, status=statuses or None, since=since, until=until, parent_execution_id=parent,
        limit=limit, cursor=cursor)
    return ExecutionPage(items=[ExecutionInfo(**_info(e)) for e in page.items], next_cursor=page.next_cursor)


@router.get("/api/executions/{id}", response_model=ExecutionDetail,
            summary="One execution with its per-step state", responses=responses(401, 403, 404, 422, 503))
async def get_execution(request: Request, _: Annotated[Any, require("viewer")],
                        id: ExecutionId) -> ExecutionDetail:
    services = services_of(request)
    execution = await services.executions.get(id)
    summary = await services.executions.summary(id)  # read after the row: never older than it
    info = _info(execution)
    if summary.get("status") in _ENDED:
        info["status"] = summary["status"]
    steps = {name: StepState(**{k: v for k, v in state.items() if k in StepState.model_fields})
             for name, state in (summary.get("steps") or {}).items()}
    return ExecutionDetail(**info, trace_id=summary.get("trace_id"), result=summary.get("result"),
                           error=summary.get("error"), steps=steps)


@router.get("/api/executions/{id}/events", response_model=EventPage,
            summary="A page of the execution's events, in order",
            responses=responses(400, 401, 403, 404, 422, 503))
async def events(request: Request, _: Annotated[Any, require("viewer")], id: ExecutionId,
                 after_seq: AfterSeq = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> EventPage:
    services = services_of(request)
    items = await services.executions.events(id, after_seq=after_seq, limit=limit)
    last = max((e.seq or 0 for e in items), default=None)
    stored = (await services.executions.get(id)).last_seq
    return EventPage(items=items, next_after_seq=last if last is not None and last < stored else None)


def _last_event_id(value: str | None) -> int:
    if value is None or not value.strip():
        return 0
    if not value.strip().isdigit() or int(value) > MAX_SEQ:
        raise InvalidArgumentError(f"Last-Event-ID '{value[:40]}' is not an event seq",
                                   where="Last-Event-ID header", fix="send the id of the last event received")
    return int(value)


def sse(event: Event) -> bytes:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


async def event_stream(follow: AsyncGenerator[Event, None], *, stopping: asyncio.Event,
                       keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
    """Each event as Server-Sent Events; `: keepalive` while idle; ends after the terminal event (or when
    the server stops: the client resumes with Last-Event-ID)."""
    stop = asyncio.ensure_future(stopping.wait())
    pending: asyncio.Future[Event] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(follow))
            waiting: set[asyncio.Future[Any]] = {pending, stop}
            done, _ = await asyncio.wait(waiting, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED)
            if pending in done:
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield sse(event)
                if event.type in TERMINAL_EVENTS:
                    return
            elif stop in done:
                return
            else:
                yield b": keepalive\n\n"
    finally:
        stop.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(Exception):
            await follow.aclose()


@router.get("/api/executions/{id}/stream", summary="The execution's events as Server-Sent Events",
            response_class=StreamingResponse,
            responses={200: {"description": "one `id: <seq>`, `event: <type>`, `data: <event JSON>` per "
                                            "event; ends after the terminal event",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **responses(400, 401, 403, 404, 422, 503)})
async def stream(request: Request, _: Annotated[Any, require("viewer")], id: ExecutionId,
                 after_seq: AfterSeq = 0,
                 last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
                 ) -> StreamingResponse:
    services = services_of(request)
    start = max(after_seq, _last_event_id(last_event_id))
    await services.executions.get(id)  # 404 before the stream starts
    body = event_stream(services.executions.follow(id, after_seq=start, poll_s=0.05),
                        stopping=request.app.state.stopping, keepalive_s=request.app.state.keepalive_s)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/api/executions/{id}/cancel", status_code=202, response_model=Cancelling,
             summary="Cancel a running execution (and its children)",
             responses=responses(401, 403, 404, 409, 422, 503))
async def cancel(request: Request, _: Annotated[Any, require("operator")], id: ExecutionId) -> Cancelling:
    await services_of(request).executions.cancel(id, "cancelled through the API")
    return Cancelling(execution_id=id, status="cancelling")
