"""POST /api/ui/links: a one-time sign-in link to the console for the calling token (`noetl ui`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from control_plane.api.auth import require
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.console.session import sessions_of
from control_plane.services.auth import TokenInfo
from control_plane.services.sessions import CONSOLE_ROOT, HOME_PATH, MAX_PATH

router = APIRouter(tags=["console"], route_class=AuthorizedRoute)


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(default=None, max_length=MAX_PATH, examples=[HOME_PATH],
                             description=f"where the link leads once signed in: a path under {CONSOLE_ROOT}/ "
                                         f"(default {HOME_PATH})")


class SignInLink(BaseModel):
    url: str = Field(description="open it in a browser: it signs in once, within the minute")
    expires_at: datetime


@router.post("/api/ui/links", status_code=201, response_model=SignInLink,
             summary="A one-time sign-in link to the web console, as the calling token (valid 60 s)",
             responses=responses(400, 401, 403, 413, 415, 422, 503))
async def create_link(request: Request, token: Annotated[TokenInfo, require("viewer")],
                      body: LinkRequest | None = None) -> SignInLink:
    link = await sessions_of(request).link(token, body.path if body is not None else None)
    base = str(request.base_url).rstrip("/")
    return SignInLink(url=f"{base}{CONSOLE_ROOT}/sign-in/link?{urlencode({'code': link.code})}",
                      expires_at=link.expires_at)
