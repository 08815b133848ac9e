"""Who may do what: bearer tokens with a role each; roles include the ones below them."""

from __future__ import annotations

from control_plane.errors import ForbiddenError, InvalidArgumentError, UnauthorizedError
from control_plane.roles import ROLES
from control_plane.store import Store
from control_plane.store.tokens import TokenInfo

__all__ = ["ROLES", "AuthService", "TokenInfo", "check_role", "role_allows"]


def role_allows(role: str, needed: str) -> bool:
    """Whether `role` includes `needed` (viewer < operator < approver < admin)."""
    if needed not in ROLES:
        raise InvalidArgumentError(f"unknown role '{needed}'", where="auth", fix=f"one of {', '.join(ROLES)}")
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_role(info: TokenInfo, needed: str) -> TokenInfo:
    """`info` when its role includes `needed`, else ForbiddenError (the API's and the console's check)."""
    if not role_allows(info.role, needed):
        raise ForbiddenError(f"token '{info.name}' has role '{info.role}'; this needs '{needed}'",
                             where="role", fix=f"use a token with role '{needed}' or higher")
    return info


class AuthService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def authenticate(self, token: str | None) -> TokenInfo:
        """The live token's info; UnauthorizedError for a missing, unknown or revoked token."""
        if not token:
            raise UnauthorizedError("no bearer token was sent", where="Authorization header",
                                    fix="send 'Authorization: Bearer <token>' (noetl token create)")
        info = await self.store.tokens.authenticate(token)
        if info is None:
            raise UnauthorizedError("the bearer token is not valid (unknown or revoked)",
                                    where="Authorization header",
                                    fix="create a token with `noetl token create --role ROLE --name NAME`")
        return info

    async def authorize(self, token: str | None, needed: str) -> TokenInfo:
        """The token's info when its role includes `needed`; else UnauthorizedError or ForbiddenError."""
        return check_role(await self.authenticate(token), needed)

    async def create_token(self, name: str, role: str) -> tuple[TokenInfo, str]:
        return await self.store.tokens.create(name, role)

    async def tokens(self) -> list[TokenInfo]:
        return await self.store.tokens.list()

    async def revoke(self, token_id: str) -> None:
        await self.store.tokens.revoke(token_id)
