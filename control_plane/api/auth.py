"""Bearer tokens: `require(role)` is the dependency every endpoint but /health declares.

The check itself runs before FastAPI reads the body (see routing.AuthorizedRoute), so a request without
a valid token is answered 401, whatever its body; the dependency then hands the endpoint the token's
info and declares the bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_plane.api.context import services_of
from control_plane.services.auth import ROLES, TokenInfo

ROLE_ATTRIBUTE = "noetl_role"
_SCOPE_KEY = "noetl.authorized"

bearer = HTTPBearer(auto_error=False, scheme_name="bearer", bearerFormat="noetl_<43 URL-safe characters>",
                    description="An API token (`noetl token create --role ROLE --name NAME`). Roles, each "
                                "including the ones before it: " + ", ".join(ROLES) + ".")


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


async def authorize(request: Request, role: str) -> TokenInfo:
    """The token's info when its role includes `role` (checked once per request and role);
    UnauthorizedError (401) or ForbiddenError (403) otherwise."""
    done: dict[str, TokenInfo] = request.scope.setdefault(_SCOPE_KEY, {})
    if role not in done:
        done[role] = await services_of(request).auth.authorize(bearer_token(request), role)
    return done[role]


def require(role: str) -> Any:
    """A dependency: the caller's token must have `role` (or a higher one)."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}'; one of {', '.join(ROLES)}")

    async def authorized(request: Request,
                         _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> TokenInfo:
        return await authorize(request, role)

    setattr(authorized, ROLE_ATTRIBUTE, role)
    authorized.__name__ = f"require_{role}"
    return Depends(authorized)


def required_role(dependant: Any) -> str | None:
    """The role a route's dependencies require (None: a public route)."""
    pending = [dependant]
    while pending:
        current = pending.pop()
        role = getattr(current.call, ROLE_ATTRIBUTE, None)
        if role is not None:
            return str(role)
        pending.extend(current.dependencies)
    return None
