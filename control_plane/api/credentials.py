"""/api/credentials: create or replace (admin), list and describe (viewer), delete (admin).
No answer ever holds a credential's values."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from control_plane.api.auth import require
from control_plane.api.context import services_of
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.credentials import CredentialInfo, CredentialList, CredentialRequest

router = APIRouter(prefix="/api/credentials", tags=["credentials"], route_class=AuthorizedRoute)

Name = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$",
                           description="letters, digits, '_', '.' and '-'")]


def _info(info: Any) -> CredentialInfo:
    return CredentialInfo(name=info.name, type=info.type, description=info.description,
                          created_at=info.created_at, updated_at=info.updated_at)


@router.put("/{name}", response_model=CredentialInfo, summary="Create or replace a credential",
            responses=responses(400, 401, 403, 413, 415, 422, 503))
async def set_credential(request: Request, _: Annotated[Any, require("admin")], name: Name,
                         body: CredentialRequest) -> CredentialInfo:
    info = await services_of(request).credentials.set(name, body.type, body.data, body.description)
    return _info(info)


@router.get("", response_model=CredentialList, summary="Every credential's name, type and description",
            responses=responses(401, 403, 503))
async def list_credentials(request: Request, _: Annotated[Any, require("viewer")]) -> CredentialList:
    return CredentialList(items=[_info(i) for i in await services_of(request).credentials.list()])


@router.get("/{name}", response_model=CredentialInfo, summary="One credential's info (never its values)",
            responses=responses(401, 403, 404, 422, 503))
async def get_credential(request: Request, _: Annotated[Any, require("viewer")],
                         name: Name) -> CredentialInfo:
    return _info(await services_of(request).credentials.info(name))


@router.delete("/{name}", status_code=204, response_class=Response, summary="Delete a credential",
               responses=responses(401, 403, 404, 422, 503))
async def delete_credential(request: Request, _: Annotated[Any, require("admin")], name: Name) -> Response:
    await services_of(request).credentials.delete(name)
    return Response(status_code=204)
