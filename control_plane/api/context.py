"""How an endpoint reaches the services the app was built with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from control_plane.app import ApiServices


def services_of(request: Request) -> ApiServices:
    return request.app.state.services
