"""/api/catalog: register (YAML or JSON), list, get, versions, delete."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from control_plane.api.auth import require
from control_plane.api.context import services_of
from control_plane.api.problems import MalformedBodyError, responses
from control_plane.api.routing import JSON, AuthorizedRoute, media_type
from control_plane.schemas.catalog import (
    REGISTER_JSON_SCHEMA,
    DeclaredTrigger,
    Deleted,
    Diagnostic,
    Playbook,
    PlaybookList,
    PlaybookSummary,
    Registered,
    RegisterRequest,
)
from control_plane.schemas.executions import MAX_VERSION
from control_plane.services.triggers import webhook_path

router = APIRouter(prefix="/api/catalog", tags=["catalog"], route_class=AuthorizedRoute)

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")
_REGISTER_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    **{t: {"schema": {"type": "string", "description": "the playbook's YAML"}} for t in YAML_TYPES},
    JSON: {"schema": REGISTER_JSON_SCHEMA}}}}

PathQuery = Annotated[str, Query(min_length=1, max_length=1000, description="the catalog path")]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_VERSION, description="default: the latest")]


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"{what} is not UTF-8 text (byte {exc.start})", where="body",
                                 fix="send the playbook's YAML encoded as UTF-8") from None


async def playbook_text(request: Request) -> str:
    """The YAML of a registration: the raw body, or the `content`/`content_text` of a JSON body."""
    raw = await request.body()
    if not raw.strip():
        raise MalformedBodyError("the body is empty", where="body",
                                 fix="send the playbook's YAML, or JSON {\"content_text\": \"<YAML>\"}")
    if media_type(request) != JSON:
        return _utf8(raw, "the body")
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedBodyError(f"the body is not valid JSON: {exc}", where="body",
                                 fix="send JSON {\"content\": \"<base64 YAML>\"} or "
                                     "{\"content_text\": \"<YAML>\"}") from None
    try:
        body = RegisterRequest.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_input=False)]) from None
    if body.content_text is not None:
        return body.content_text
    try:
        decoded = base64.b64decode(body.content or "", validate=True)
    except (binascii.Error, ValueError):
        raise MalformedBodyError("'content' is not valid base64", where="body.content",
                                 fix="base64-encode the YAML, or send it as 'content_text'") from None
    return _utf8(decoded, "the base64-decoded 'content'")


@router.post("/register", status_code=201, response_model=Registered, openapi_extra=_REGISTER_BODY,
             summary="Register a playbook as the next version of its path",
             responses=responses(400, 401, 403, 413, 415, 422, 503))
async def register(request: Request, token: Annotated[Any, require("operator")]) -> Registered:
    text = await playbook_text(request)
    registered = await services_of(request).catalog.register(text, "<request body>", actor=token.name)
    warnings = [Diagnostic(line=d.line, column=d.column, code=d.code, path=d.path, message=d.message)
                for d in registered.warnings]
    return Registered(path=registered.path, version=registered.version, warnings=warnings,
                      triggers=[declared_trigger(c) for c in registered.triggers])


def declared_trigger(created: Any) -> DeclaredTrigger:
    record = created.trigger
    return DeclaredTrigger(id=record.trigger_id, name=record.name, kind=record.kind, secret=created.secret,
                           webhook_path=webhook_path(record))


def _summary(entry: Any) -> PlaybookSummary:
    return PlaybookSummary(path=entry.path, version=entry.version, name=entry.name,
                           description=entry.description, tags=list(entry.tags), labels=dict(entry.labels),
                           created_at=entry.created_at)


@router.get("", response_model=PlaybookList, summary="The latest version of every path",
            responses=responses(401, 403, 422, 503))
async def list_playbooks(request: Request, _: Annotated[Any, require("viewer")],
                         prefix: Annotated[str | None, Query(max_length=1000)] = None) -> PlaybookList:
    return PlaybookList(items=[_summary(e) for e in await services_of(request).catalog.list(prefix)])


@router.get("/playbook", response_model=Playbook, summary="One version of a path, with its YAML",
            responses=responses(401, 403, 404, 422, 503))
async def get_playbook(request: Request, _: Annotated[Any, require("viewer")], path: PathQuery,
                       version: VersionQuery = None) -> Playbook:
    entry = await services_of(request).catalog.get(path, version)
    return Playbook(**_summary(entry).model_dump(), content=entry.text)


@router.get("/versions", response_model=PlaybookList, summary="Every version of a path, oldest first",
            responses=responses(401, 403, 404, 422, 503))
async def versions(request: Request, _: Annotated[Any, require("viewer")], path: PathQuery) -> PlaybookList:
    return PlaybookList(items=[_summary(e) for e in await services_of(request).catalog.versions(path)])


@router.delete("/playbook", response_model=Deleted, summary="Delete one version, or every version",
               responses=responses(401, 403, 404, 422, 503))
async def delete_playbook(request: Request, _: Annotated[Any, require("operator")], path: PathQuery,
                          version: VersionQuery = None) -> Deleted:
    return Deleted(deleted=await services_of(request).catalog.delete(path, version))
