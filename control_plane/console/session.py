"""Who is signed in to the console: the session cookie, the role checks, and the checks every form post
passes (same origin, the session's CSRF token); errors become pages, a missing session the sign-in page."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse

from control_plane.api.context import built_with, services_of
from control_plane.api.problems import status_of
from control_plane.api.routing import media_type
from control_plane.console.render import page
from control_plane.errors import ForbiddenError, InvalidArgumentError, UnauthorizedError
from control_plane.services.auth import check_role, role_allows
from control_plane.services.sessions import (
    CONSOLE_ROOT,
    Session,
    SessionService,
    csrf_matches,
    csrf_token,
    is_console_path,
)
from control_plane.store.tokens import TokenInfo
from engine.errors import NoetlError

COOKIE = "noetl_session"
FORM = "application/x-www-form-urlencoded"
SIGN_IN = f"{CONSOLE_ROOT}/sign-in"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in person: the token the session acts as, and the CSRF token of its forms."""

    token: TokenInfo
    session_id: str
    csrf: str

    def may(self, role: str) -> bool:
        return role_allows(self.token.role, role)


def sessions_of(request: Request) -> SessionService:
    return built_with(services_of(request).sessions, "sessions")


async def viewer_of(request: Request, role: str = "viewer") -> Viewer:
    """The session's viewer, checked against its token now (a revoked token has ended the session);
    UnauthorizedError without a live session, ForbiddenError when its role does not include `role`."""
    session_id = request.cookies.get(COOKIE)
    info = await sessions_of(request).current(session_id)
    assert session_id is not None
    check_role(info, role)
    return Viewer(token=info, session_id=session_id, csrf=csrf_token(session_id))


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's request carries it), only under
    /ui, and Secure when the console is served over https."""
    max_age = max(int((session.expires_at - datetime.now(UTC)).total_seconds()), 0)
    response.set_cookie(COOKIE, session.session_id, max_age=max_age, path=CONSOLE_ROOT, httponly=True,
                        samesite="strict", secure=secure(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=CONSOLE_ROOT, httponly=True, samesite="strict",
                           secure=secure(request))


def check_origin(request: Request) -> None:
    """A form post must come from a page of this origin: its Origin header, else its Referer, names it."""
    own = str(request.base_url).rstrip("/")
    origin = request.headers.get("origin")
    if origin is not None:
        if origin != own:
            raise ForbiddenError(f"a form was posted from another origin ({origin[:100]})",
                                 where="Origin header",
                                 fix=f"post the console's forms from its own pages at {own}{CONSOLE_ROOT}")
        return
    referer = request.headers.get("referer")
    if referer is None or not (referer == own or referer.startswith(own + "/")):
        raise ForbiddenError("a form was posted without an Origin or Referer of this site",
                             where="Origin and Referer headers",
                             fix=f"post the console's forms from its own pages at {own}{CONSOLE_ROOT}")


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's fields (URL-encoded, each once) after the origin check."""
    check_origin(request)
    body = await request.body()
    if body and media_type(request) != FORM:
        raise InvalidArgumentError(f"a console form must be {FORM}, not {media_type(request) or 'none'}",
                                   where="Content-Type header", fix="post the form from the console's page")
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if name in fields:
            raise InvalidArgumentError(f"the form field '{name}' was sent twice", where=name,
                                       fix="post the form from the console's page")
        fields[name] = value
    return fields


async def checked_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """The form's fields when it carries the session's CSRF token (and came from this origin)."""
    fields = await form_of(request)
    if not csrf_matches(viewer.session_id, fields.get("csrf")):
        raise ForbiddenError("the form's CSRF token is missing or not this session's", where="csrf field",
                             fix="reload the page and submit the form again")
    return fields


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET" or not is_console_path(target) or target.startswith(SIGN_IN):
        return SIGN_IN
    return f"{SIGN_IN}?next={quote(target, safe='')}"


class ConsoleRoute(APIRoute):
    """A console page: an error raised on purpose becomes an error page of its status (the API's problem
    statuses), and a request without a live session goes to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except UnauthorizedError:
                response = RedirectResponse(sign_in_url(request), status_code=303)
                if COOKIE in request.cookies:
                    clear_session_cookie(response, request)
                return response
            except NoetlError as exc:
                viewer = None
                with contextlib.suppress(NoetlError):  # the header shows who is signed in, when one is
                    viewer = await viewer_of(request)
                return page("error.html", {"viewer": viewer, "status": status_of(exc), "error": exc,
                                           "active": ""}, status=status_of(exc))

        return guarded
