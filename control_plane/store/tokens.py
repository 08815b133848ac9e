"""API tokens at rest: a row per token with its role and the SHA-256 of the token (never the token)."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.roles import ROLES
from control_plane.store.db import Database

log = logging.getLogger(__name__)

TOKEN_PREFIX = "noetl_"
_COLUMNS = "token_id, name, role, created_at, last_used_at"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a token: never the token."""

    token_id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None


def token_hash(token: str) -> bytes:
    """Tokens carry 256 random bits, so a plain SHA-256 is as good as a slow hash here."""
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, name: str, role: str) -> tuple[TokenInfo, str]:
        """A new token: its info and the token itself (returned only here)."""
        if role not in ROLES:
            raise InvalidArgumentError(f"unknown role '{role}'", where="tokens",
                                       fix=f"pick one of {', '.join(ROLES)}")
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidArgumentError("a token needs a name of 1 to 200 characters", where="tokens",
                                       fix="name it after who or what uses it, e.g. --name ci")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = await self._db.fetch_one(
            f"INSERT INTO api_tokens (token_id, name, role, token_hash) VALUES (%s, %s, %s, %s) "
            f"RETURNING {_COLUMNS}", (uuid.uuid4().hex, name, role, token_hash(token)))
        assert row is not None
        log.info("api token %s created (name %s, role %s)", row["token_id"], name, role)
        return TokenInfo(**row), token

    async def authenticate(self, token: str) -> TokenInfo | None:
        """The token's info when it is a live token (and notes its use), else None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        row = await self._db.fetch_one(
            f"UPDATE api_tokens SET last_used_at = clock_timestamp() "
            f"WHERE token_hash = %s AND revoked_at IS NULL RETURNING {_COLUMNS}", (token_hash(token),))
        return TokenInfo(**row) if row is not None else None

    async def list(self) -> list[TokenInfo]:
        """Live tokens, oldest first."""
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at, token_id")
        return [TokenInfo(**r) for r in rows]

    async def revoke(self, token_id: str) -> None:
        count = await self._db.execute(
            "UPDATE api_tokens SET revoked_at = clock_timestamp() WHERE token_id = %s AND revoked_at IS NULL",
            (token_id,))
        if count == 0:
            raise NotFoundError(f"token '{token_id}' is not a live token", where="tokens",
                                fix="list the tokens (GET /api/tokens) to see their ids")
        log.info("api token %s revoked", token_id)
