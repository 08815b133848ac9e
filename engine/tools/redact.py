"""Secrets out of every value that leaves a tool (spec section 10): by exact value and by key name."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
SECRET_KEYS: frozenset[str] = frozenset({
    "password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
    "access_token", "refresh_token", "id_token", "client_secret", "private_key", "secret_key",
    "session_token", "x_api_key", "cookie", "set_cookie",
})


def is_secret_key(key: str, secret_keys: Iterable[str] = SECRET_KEYS) -> bool:
    """A key names a secret when, lower-cased with `-` read as `_`, it is one of `secret_keys` or ends
    with `_` + one of them (`db_password`, `X-Api-Key`), so `max_tokens` or `token_count` are not."""
    names = secret_keys if isinstance(secret_keys, frozenset) else frozenset(secret_keys)
    return _names_secret(key, names)


@functools.lru_cache(maxsize=16384)
def _names_secret(key: str, names: frozenset[str]) -> bool:  # keys repeat: every event has the same few
    norm = key.lower().replace("-", "_")
    return norm in names or any(norm.endswith("_" + name) for name in names)


def redact(value: Any, secrets: Iterable[str] = (), secret_keys: Iterable[str] = SECRET_KEYS) -> Any:
    """A copy of `value` with every occurrence of each secret replaced by `***` in its strings (keys
    included), and the value of every secret-named key replaced by `***`. Pure; `value` is untouched."""
    ordered = sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True)
    keys = _normalized(secret_keys if isinstance(secret_keys, frozenset) else frozenset(secret_keys))
    return _redact(value, ordered, keys)


@functools.lru_cache(maxsize=64)
def _normalized(keys: frozenset[str]) -> frozenset[str]:
    return frozenset(k.lower().replace("-", "_") for k in keys)


def needs_redaction(value: Any, secrets: Iterable[str] = (),
                    secret_keys: Iterable[str] = SECRET_KEYS) -> bool:
    """Whether `redact` would change `value`: a secret inside one of its strings (keys included), or a
    secret-named key with a value. Walks without copying."""
    ordered = [s for s in secrets if isinstance(s, str) and s]
    keys = _normalized(secret_keys if isinstance(secret_keys, frozenset) else frozenset(secret_keys))
    return _needs(value, ordered, keys)


def _needs(value: Any, secrets: list[str], keys: frozenset[str]) -> bool:
    if isinstance(value, str):
        return any(secret in value for secret in secrets)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and ((item is not None and is_secret_key(key, keys))
                                         or (secrets and _needs(key, secrets, keys))):
                return True
            if _needs(item, secrets, keys):
                return True
        return False
    if isinstance(value, (list, tuple)):
        return any(_needs(item, secrets, keys) for item in value)
    return False


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by `***` (longest secrets first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _redact(value: Any, secrets: list[str], keys: frozenset[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = _redact(key, secrets, keys) if isinstance(key, str) else key
            if isinstance(key, str) and item is not None and is_secret_key(key, keys):
                out[name] = MASK
            else:
                out[name] = _redact(item, secrets, keys)
        return out
    if isinstance(value, list):
        return [_redact(item, secrets, keys) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, secrets, keys) for item in value)
    return value
