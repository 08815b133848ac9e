"""The web console's sign-in: sessions made from an API token or a one-time link, each acting as its token.

A session id and a link's code are random secrets given out once; the store keeps only their hashes. A
session is checked against its token on every request, so revoking the token ends the session. The CSRF
token of a session's forms is derived from its id (docs/console.md, Security).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from control_plane.errors import InvalidArgumentError, UnauthorizedError
from control_plane.services.auth import AuthService
from control_plane.store import Store
from control_plane.store.tokens import TokenInfo

CONSOLE_ROOT = "/ui"
HOME_PATH = "/ui/executions"
SESSION_TTL_S = 12 * 3600.0
LINK_TTL_S = 60.0
MAX_PATH = 1000
_CSRF_CONTEXT = b"noetl-console-csrf\x00"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in console: its id (the cookie's value, given out only here), who it acts as, its end."""

    session_id: str
    token: TokenInfo
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Link:
    """A one-time sign-in link's code (given out only here), the console path it leads to, its expiry."""

    code: str
    path: str
    expires_at: datetime


def is_console_path(path: str) -> bool:
    """Whether `path` is a relative URL inside the console (/ui, /ui/..., /ui?...): never another host, no
    scheme, no backslash, no dot segment, no control character (no open redirect)."""
    if not path or len(path) > MAX_PATH or any(ord(c) < 0x21 or c == "\\" for c in path):
        return False
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or path.startswith("//"):
        return False
    if parts.path != CONSOLE_ROOT and not parts.path.startswith(CONSOLE_ROOT + "/"):
        return False
    return "//" not in parts.path and not any(seg in (".", "..") for seg in parts.path.split("/"))


def console_path(path: str | None) -> str:
    """The console path a sign-in leads to (HOME_PATH when none is given); InvalidArgumentError for
    anything but a console path."""
    if path is None or path == "":
        return HOME_PATH
    if not is_console_path(path):
        raise InvalidArgumentError(f"'{path[:100]}' is not a path of the console", where="path",
                                   fix=f"give a relative path that starts with {CONSOLE_ROOT}/, e.g. "
                                       f"{HOME_PATH} (links never lead to another site)")
    return path


def csrf_token(session_id: str) -> str:
    """The CSRF token of the session's forms: a hash of its id, which only the cookie's holder knows and
    which the token does not reveal."""
    digest = hashlib.sha256(_CSRF_CONTEXT + session_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(session_id: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(session_id).encode(), given.encode())


class SessionService:
    def __init__(self, store: Store, *, session_ttl_s: float = SESSION_TTL_S,
                 link_ttl_s: float = LINK_TTL_S) -> None:
        self.store = store
        self.auth = AuthService(store)
        self.session_ttl_s = session_ttl_s
        self.link_ttl_s = link_ttl_s

    async def sign_in(self, token: str | None) -> Session:
        """A new session acting as `token`; UnauthorizedError for a missing, unknown or revoked token."""
        info = await self.auth.authenticate(token.strip() if token else None)
        return await self._session(info)

    async def current(self, session_id: str | None) -> TokenInfo:
        """The token a live session acts as; UnauthorizedError when there is none (never signed in, signed
        out, expired, or its token revoked)."""
        info = await self.store.sessions.token_of(session_id) if session_id else None
        if info is None:
            raise UnauthorizedError("not signed in to the console (no session, or it ended)",
                                    where="console session",
                                    fix=f"sign in at {CONSOLE_ROOT}/sign-in with an API token, or run "
                                        "`noetl ui`")
        return info

    async def sign_out(self, session_id: str) -> None:
        await self.store.sessions.end(session_id)

    async def link(self, info: TokenInfo, path: str | None = None) -> Link:
        """A one-time code that signs in as `info`'s token within `link_ttl_s` and leads to `path`."""
        target = console_path(path)
        code, expires_at = await self.store.sessions.create_link(info.token_id, target, self.link_ttl_s)
        return Link(code=code, path=target, expires_at=expires_at)

    async def redeem(self, code: str | None) -> tuple[Session, str]:
        """Use a link's code (once): a new session and the path it leads to; UnauthorizedError for a code
        that is unknown, used, expired, or whose token was revoked."""
        redeemed = await self.store.sessions.redeem_link(code) if code else None
        if redeemed is None:
            raise UnauthorizedError("this sign-in link is unknown, was used already or has expired",
                                    where="code", fix="links work once within "
                                    f"{self.link_ttl_s:g} s: run `noetl ui` again for a new one")
        return await self._session(redeemed.token), console_path(redeemed.path)

    async def _session(self, info: TokenInfo) -> Session:
        made = await self.store.sessions.create(info.token_id, self.session_ttl_s)
        if made is None:
            raise UnauthorizedError(f"token '{info.name}' was revoked", where="console session",
                                    fix="sign in with a live token")
        return Session(session_id=made[0], token=info, expires_at=made[1])
