"""A tool's `auth` turned into credential fields (spec section 10), and which of them are secret.

`auth` is a stored credential's name (`pg_main`); or a reference mapping `{source: credential, key: name}`
(also `{credential: name}`); or several named references `{alias: {source: credential, key: name,
tool: postgres}}` of which the one for this tool is used; or the credential fields themselves (for
example a rendered `{{ keychain.api }}`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.tools.base import ToolCall
from engine.tools.redact import is_secret_key

_URL_KEYS = ("dsn", "url", "connection_string", "uri", "endpoint")
_CONNINFO_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


class AuthConfigError(ValueError):
    """`auth` has a shape the tool cannot use; the message says which shapes are valid."""


def _reference(value: Mapping[str, Any]) -> str | None:
    name = value.get("key") or value.get("credential") or value.get("ref")
    if isinstance(name, str) and set(value) <= {"source", "key", "credential", "ref", "tool", "name"}:
        return name
    return None


async def resolve_auth(call: ToolCall, auth: Any, *, tool: str) -> dict[str, Any] | None:
    """The credential fields `auth` stands for (with `type` when the store knows it), or None."""
    if auth is None or auth == "":
        return None
    if isinstance(auth, str):
        return await _fetch(call, auth)
    if not isinstance(auth, Mapping):
        raise AuthConfigError(f"auth must be a credential name or a mapping, got {type(auth).__name__}")
    name = _reference(auth)
    if name is not None:
        return await _fetch(call, name)
    refs = {alias: ref for alias, ref in auth.items() if isinstance(ref, Mapping) and _reference(ref)}
    if refs and len(refs) == len(auth):
        mine = [ref for ref in refs.values() if ref.get("tool") in (None, tool)]
        if len(refs) == 1 or len(mine) == 1:
            chosen = next(iter(refs.values())) if len(refs) == 1 else mine[0]
            return await _fetch(call, str(_reference(chosen)))
        raise AuthConfigError(f"auth names several credentials ({', '.join(refs)}); mark the one for "
                              f"this {tool} tool with 'tool: {tool}'")
    return dict(auth)


async def _fetch(call: ToolCall, name: str) -> dict[str, Any]:
    credential = await call.credentials.get(name)  # MissingCredentialError propagates
    data = dict(credential.data)
    data.setdefault("type", credential.type)
    return data


def secret_values(fields: Mapping[str, Any]) -> set[str]:
    """The values to redact: secret-named fields, whole DSNs/URLs, and passwords inside URLs."""
    found: set[str] = set()
    for key, value in fields.items():
        if isinstance(value, Mapping):
            found |= secret_values(value)
        elif isinstance(value, str) and value:
            if is_secret_key(str(key)):
                found.add(value)
            elif key in _URL_KEYS:
                try:
                    password = urlsplit(value).password
                except ValueError:
                    password = None
                match = _CONNINFO_PASSWORD.search(value)
                if match:
                    password = match.group(1).strip("'")
                if password:
                    found.add(password)
                    found.add(value)
    return found
