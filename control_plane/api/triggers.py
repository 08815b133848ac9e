"""/api/triggers (viewer reads, operator changes) and /api/hooks/{id}: webhook deliveries, signed with
HMAC-SHA256 instead of a token (docs/triggers.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from control_plane.api.auth import require
from control_plane.api.context import built_with, services_of
from control_plane.api.problems import BodyTooLargeError, responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.triggers import (
    FiringInfo,
    HookAccepted,
    TriggerCreate,
    TriggerCreated,
    TriggerDetail,
    TriggerEventInfo,
    TriggerEventList,
    TriggerInfo,
    TriggerList,
)
from control_plane.services.triggers import TriggerService
from control_plane.store.triggers import FiringRecord, TriggerRecord

router = APIRouter(prefix="/api/triggers", tags=["triggers"], route_class=AuthorizedRoute)
hooks = APIRouter(prefix="/api/hooks", tags=["triggers"], route_class=AuthorizedRoute)

TriggerId = Annotated[str, Path(min_length=1, max_length=200, description="the trigger's id")]
MAX_HOOK_BYTES = 1 << 20


def _service(request: Request) -> TriggerService:
    return built_with(services_of(request).triggers, "triggers")


def info(service: TriggerService, record: TriggerRecord) -> dict[str, Any]:
    return service.describe(record)


def firing_info(firing: FiringRecord) -> FiringInfo:
    return FiringInfo(**TriggerService.describe_firing(firing))


@router.post("", status_code=201, response_model=TriggerCreated, summary="Create a trigger",
             responses=responses(400, 401, 403, 404, 413, 415, 422, 503))
async def create_trigger(request: Request, token: Annotated[Any, require("operator")],
                         body: TriggerCreate) -> TriggerCreated:
    service = _service(request)
    created = await service.create(body.path, body.spec(), actor=token.name)
    return TriggerCreated(**info(service, created.trigger), secret=created.secret)


@router.get("", response_model=TriggerList, summary="The triggers, by path",
            responses=responses(401, 403, 503))
async def list_triggers(request: Request, _: Annotated[Any, require("viewer")],
                        path: Annotated[str | None, Query(max_length=500)] = None) -> TriggerList:
    service = _service(request)
    return TriggerList(items=[TriggerInfo(**info(service, r)) for r in await service.list(path=path)])


@router.get("/{id}", response_model=TriggerDetail, summary="A trigger and its recent firings",
            responses=responses(401, 403, 404, 422, 503))
async def get_trigger(request: Request, _: Annotated[Any, require("viewer")], id: TriggerId,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> TriggerDetail:
    service = _service(request)
    record = await service.get(id)
    return TriggerDetail(**info(service, record),
                         firings=[firing_info(f) for f in await service.firings(id, limit=limit)])


@router.get("/{id}/events", response_model=TriggerEventList, summary="What the trigger's firings did",
            responses=responses(401, 403, 404, 422, 503))
async def trigger_events(request: Request, _: Annotated[Any, require("viewer")], id: TriggerId,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> TriggerEventList:
    events = await _service(request).events(id, limit=limit)
    return TriggerEventList(items=[TriggerEventInfo(seq=e.seq, trigger_id=e.trigger_id, firing_id=e.firing_id,
                                                    type=e.type, reason=e.reason, execution_id=e.execution_id,
                                                    occurred_at=e.occurred_at, body=e.body) for e in events])


@router.post("/{id}/pause", response_model=TriggerInfo, summary="Pause a trigger",
             responses=responses(401, 403, 404, 422, 503))
async def pause_trigger(request: Request, token: Annotated[Any, require("operator")],
                        id: TriggerId) -> TriggerInfo:
    service = _service(request)
    return TriggerInfo(**info(service, await service.set_paused(id, True, actor=token.name)))


@router.post("/{id}/resume", response_model=TriggerInfo,
             summary="Resume a trigger (a time trigger goes on from now: the paused time is not caught up)",
             responses=responses(401, 403, 404, 422, 503))
async def resume_trigger(request: Request, token: Annotated[Any, require("operator")],
                         id: TriggerId) -> TriggerInfo:
    service = _service(request)
    return TriggerInfo(**info(service, await service.set_paused(id, False, actor=token.name)))


@router.delete("/{id}", status_code=204, response_class=Response, summary="Delete a trigger",
               responses=responses(401, 403, 404, 422, 503))
async def delete_trigger(request: Request, token: Annotated[Any, require("operator")],
                         id: TriggerId) -> Response:
    await _service(request).delete(id, actor=token.name)
    return Response(status_code=204)


@hooks.post("/{id}", status_code=202, response_model=HookAccepted,
            summary="A webhook delivery: X-NoETL-Signature: sha256=<HMAC-SHA256 of the body>; "
                    "X-NoETL-Delivery: <id> makes a redelivery start nothing new",
            openapi_extra={"requestBody": {"content": {"application/json": {"schema": {}},
                                                       "application/octet-stream": {"schema": {}},
                                                       "text/plain": {"schema": {}}}}},
            responses=responses(401, 404, 409, 413, 503))
async def deliver(request: Request, id: TriggerId) -> HookAccepted:
    body = await request.body()
    if len(body) > MAX_HOOK_BYTES:
        raise BodyTooLargeError(f"the webhook delivery has {len(body)} bytes, more than {MAX_HOOK_BYTES}",
                                where="body", fix="send a smaller body (at most 1 MiB), e.g. a reference to "
                                                  "the data rather than the data")
    done = await _service(request).deliver_webhook(id, body, dict(request.headers))
    return HookAccepted(firing_id=done.firing_id, status=done.status, execution_id=done.execution_id,
                        reason=done.reason, duplicate=done.duplicate)
