"""/ui/sign-in (a form taking an API token), /ui/sign-in/link (a one-time link's code), /ui/sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.responses import RedirectResponse

from control_plane.console.render import page
from control_plane.console.session import (
    ConsoleRoute,
    checked_form,
    clear_session_cookie,
    form_of,
    sessions_of,
    set_session_cookie,
    viewer_of,
)
from control_plane.errors import UnauthorizedError
from control_plane.services.sessions import CONSOLE_ROOT, HOME_PATH, is_console_path

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Next = Annotated[str | None, Query(max_length=1000, alias="next")]


def _next(value: str | None) -> str:
    return value if value and is_console_path(value) else HOME_PATH


@router.get(CONSOLE_ROOT)
async def root() -> Response:
    return RedirectResponse(HOME_PATH, status_code=303)


@router.get(f"{CONSOLE_ROOT}/sign-in")
async def sign_in_form(next_: Next = None) -> Response:
    return page("sign_in.html", {"viewer": None, "active": "sign-in", "next": _next(next_), "error": None})


@router.post(f"{CONSOLE_ROOT}/sign-in")
async def sign_in(request: Request) -> Response:
    fields = await form_of(request)  # same origin (no session yet: no CSRF token to check)
    target = _next(fields.get("next"))
    try:
        session = await sessions_of(request).sign_in(fields.get("token"))
    except UnauthorizedError as exc:
        return page("sign_in.html", {"viewer": None, "active": "sign-in", "next": target, "error": exc},
                    status=401)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, session)
    return response


@router.get(f"{CONSOLE_ROOT}/sign-in/link")
async def sign_in_with_link(request: Request,
                            code: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    try:
        session, target = await sessions_of(request).redeem(code)
    except UnauthorizedError as exc:
        return page("sign_in.html", {"viewer": None, "active": "sign-in", "next": HOME_PATH, "error": exc},
                    status=401)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, session)
    return response


@router.post(f"{CONSOLE_ROOT}/sign-out")
async def sign_out(request: Request) -> Response:
    viewer = await viewer_of(request)
    await checked_form(request, viewer)
    await sessions_of(request).sign_out(viewer.session_id)
    response = RedirectResponse(f"{CONSOLE_ROOT}/sign-in", status_code=303)
    clear_session_cookie(response, request)
    return response
