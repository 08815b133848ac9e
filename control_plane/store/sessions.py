"""The web console's sessions and one-time sign-in links at rest: only SHA-256 hashes of their secrets."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from control_plane.store.db import Database
from control_plane.store.tokens import TokenInfo

_TOKEN_COLUMNS = "t.token_id, t.name, t.role, t.created_at, t.last_used_at"
KEEP_ENDED_S = 86400.0  # ended or expired rows are deleted this long after their end


def secret_hash(secret: str) -> bytes:
    """Session ids and link codes carry 256 random bits: a plain SHA-256 is as good as a slow hash."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A link that was just used: who it signs in (a live token) and where it leads."""

    token: TokenInfo
    path: str


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, token_id: str, ttl_s: float) -> tuple[str, datetime] | None:
        """A new session of a live token: its id (returned only here) and when it expires; None when the
        token is not live."""
        session_id = secrets.token_urlsafe(32)
        row = await self._db.fetch_one(
            "INSERT INTO console_sessions (session_hash, token_id, expires_at) "
            "SELECT %s, token_id, clock_timestamp() + make_interval(secs => %s) FROM api_tokens "
            "WHERE token_id = %s AND revoked_at IS NULL RETURNING expires_at",
            (secret_hash(session_id), ttl_s, token_id))
        await self._db.execute(
            "DELETE FROM console_sessions WHERE coalesce(ended_at, expires_at) "
            "< clock_timestamp() - make_interval(secs => %s)", (KEEP_ENDED_S,))
        return (session_id, row["expires_at"]) if row is not None else None

    async def token_of(self, session_id: str) -> TokenInfo | None:
        """The token a live session acts as, when the session is neither ended nor expired and the token
        is not revoked; else None."""
        row = await self._db.fetch_one(
            f"SELECT {_TOKEN_COLUMNS} FROM console_sessions s JOIN api_tokens t USING (token_id) "
            "WHERE s.session_hash = %s AND s.ended_at IS NULL AND s.expires_at > clock_timestamp() "
            "AND t.revoked_at IS NULL", (secret_hash(session_id),))
        return TokenInfo(**row) if row is not None else None

    async def end(self, session_id: str) -> bool:
        """Sign a session out; whether it was live."""
        count = await self._db.execute(
            "UPDATE console_sessions SET ended_at = clock_timestamp() "
            "WHERE session_hash = %s AND ended_at IS NULL", (secret_hash(session_id),))
        return count > 0

    async def create_link(self, token_id: str, path: str, ttl_s: float) -> tuple[str, datetime]:
        """A one-time code for `token_id` leading to `path`: the code (returned only here) and its expiry."""
        code = secrets.token_urlsafe(32)
        row = await self._db.fetch_one(
            "INSERT INTO console_links (code_hash, token_id, path, expires_at) "
            "VALUES (%s, %s, %s, clock_timestamp() + make_interval(secs => %s)) RETURNING expires_at",
            (secret_hash(code), token_id, path, ttl_s))
        assert row is not None
        await self._db.execute(
            "DELETE FROM console_links WHERE expires_at < clock_timestamp() - make_interval(secs => %s)",
            (KEEP_ENDED_S,))
        return code, row["expires_at"]

    async def redeem_link(self, code: str) -> Redeemed | None:
        """Use a code once: its live token and path; None when the code is unknown, used or expired, or
        its token was revoked meanwhile."""
        row = await self._db.fetch_one(
            f"WITH used AS (UPDATE console_links SET used_at = clock_timestamp() "
            f"WHERE code_hash = %s AND used_at IS NULL AND expires_at > clock_timestamp() "
            f"RETURNING token_id, path) "
            f"SELECT {_TOKEN_COLUMNS}, used.path FROM used JOIN api_tokens t USING (token_id) "
            f"WHERE t.revoked_at IS NULL", (secret_hash(code),))
        if row is None:
            return None
        path = row.pop("path")
        return Redeemed(TokenInfo(**row), path)
