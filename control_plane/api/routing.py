"""The route class of every endpoint: authorize, check the content type, read the body (bounded) —
in that order, before FastAPI parses anything, so a request without a valid token gets 401 whatever
it sent, and a body of the wrong type gets 415 rather than a schema error."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from control_plane.api.auth import authorize, required_role
from control_plane.api.problems import UnsupportedMediaTypeError

JSON = "application/json"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def media_type(request: Request) -> str | None:
    value = request.headers.get("content-type")
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


def _accepted(route: APIRoute) -> tuple[str, ...] | None:
    """The media types the route's body may have (None: it takes no body)."""
    if route.body_field is not None:
        return (JSON,)
    content = ((route.openapi_extra or {}).get("requestBody") or {}).get("content")
    return tuple(content) if content else None


def _acceptable(media: str | None, accepted: tuple[str, ...]) -> bool:
    if media is None:
        return False
    return media in accepted or (JSON in accepted and media.startswith("application/")
                                 and media.endswith("+json"))


class AuthorizedRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        role = required_role(self.dependant)
        accepted = _accepted(self)

        async def guarded(request: Request) -> Response:
            if role is not None:
                await authorize(request, role)
            if accepted is not None and request.method in _BODY_METHODS and _has_body(request):
                media = media_type(request)
                if not _acceptable(media, accepted):
                    raise UnsupportedMediaTypeError(
                        f"this endpoint does not take a body of type '{media or 'none given'}'",
                        where="Content-Type header", fix=f"send one of {', '.join(accepted)}")
                await request.body()  # read here (bounded by BodyLimit), so a too large body is a 413
            return await handler(request)

        return guarded
