"""/api/tokens (admin): create (the token is shown in that answer only), list, revoke."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Path, Request, Response

from control_plane.api.auth import require
from control_plane.api.context import services_of
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.tokens import Role, TokenCreated, TokenInfo, TokenList, TokenRequest
from control_plane.services.auth import ROLES

assert get_args(Role) == ROLES, "schemas.tokens.Role must list the roles of services.auth"

router = APIRouter(prefix="/api/tokens", tags=["tokens"], route_class=AuthorizedRoute)

TokenId = Annotated[str, Path(min_length=1, max_length=200, description="the token's id (not the token)")]


def _info(info: Any) -> TokenInfo:
    return TokenInfo(id=info.token_id, name=info.name, role=info.role, created_at=info.created_at,
                     last_used_at=info.last_used_at)


@router.post("", status_code=201, response_model=TokenCreated, summary="Create a token (shown once)",
             responses=responses(400, 401, 403, 413, 415, 422, 503))
async def create_token(request: Request, _: Annotated[Any, require("admin")],
                       body: TokenRequest) -> TokenCreated:
    info, token = await services_of(request).auth.create_token(body.name, body.role)
    return TokenCreated(id=info.token_id, name=info.name, role=info.role, created_at=info.created_at,
                        token=token)


@router.get("", response_model=TokenList, summary="The live tokens (never the tokens themselves)",
            responses=responses(401, 403, 503))
async def list_tokens(request: Request, _: Annotated[Any, require("admin")]) -> TokenList:
    return TokenList(items=[_info(i) for i in await services_of(request).auth.tokens()])


@router.delete("/{id}", status_code=204, response_class=Response, summary="Revoke a token",
               responses=responses(401, 403, 404, 422, 503))
async def revoke_token(request: Request, _: Annotated[Any, require("admin")], id: TokenId) -> Response:
    await services_of(request).auth.revoke(id)
    return Response(status_code=204)
