"""How an endpoint reaches the services the app was built with."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from starlette.requests import Request

from control_plane.errors import ControlPlaneError

if TYPE_CHECKING:
    from control_plane.app import ApiServices


T = TypeVar("T")


def services_of(request: Request) -> ApiServices:
    return request.app.state.services


def built_with(service: T | None, name: str) -> T:
    """An optional service of ApiServices, or the error that says the server was built without it."""
    if service is None:
        raise ControlPlaneError(f"this server was built without the {name} service",
                                where="control_plane.app", fix=f"build ApiServices with {name}=...")
    return service
