"""Keychain entries and `token(name)` resolved on the worker (spec section 10), values never recorded.

Each entry becomes `{{ keychain.<name>.<field> }}`: a stored credential's fields, a static map, a bearer
token, an OAuth2 token response (requested once, renewed when `auto_renew` and expired), secrets read
from a provider (`env` here; other providers fail with a clear error), or a Google ID token minted from a
service account key (engine.runtime.google_id_token; kept like an OAuth2 token). Entries resolve in
order, and a later entry's templates may read an earlier one (`{{ keychain.sa.json }}`). Every value
handed out is reported to `on_secret`, so the step runner can scrub it from events.

Tokens are kept per scope: `global` by name, `local` per execution, `shared` per execution that declared
the entry, so a parent and the children that inherit it (engine.net.keychain, `owner`) use one token.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine.runtime.google_id_token import IdTokenError, mint_id_token, service_account_key
from engine.tools.base import CredentialResolver, MissingCredentialError

_TOKEN_CALL = re.compile(r"""token\(\s*['"]([^'"]+)['"]\s*\)""")
SUPPORTED_PROVIDERS = ("env",)


class KeychainError(Exception):
    """A keychain entry or token could not be resolved; `kind` is an error kind of spec section 9."""

    def __init__(self, message: str, kind: str = "auth", retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


def scope_key(execution_id: str, entry: Mapping[str, Any]) -> str:
    """Where the entry's token is kept: by name (`global`), under the execution that declared it
    (`shared`: its `owner` when inherited) or under this execution (`local`)."""
    name = str(entry.get("name"))
    scope = entry.get("scope")
    if scope == "global":
        return name
    owner = entry.get("owner")
    if scope == "shared" and isinstance(owner, Mapping) and owner.get("execution_id"):
        return f"{owner['execution_id']}:{name}"
    return f"{execution_id}:{name}"


@dataclass
class _Token:
    response: dict[str, Any]
    expires_at: float | None


@dataclass
class KeychainResolver:
    credentials: CredentialResolver
    http: httpx.AsyncClient | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    google_token_url: str | None = None  # the deployment's override of Google's token endpoint
    _cache: dict[str, _Token] = field(default_factory=dict)

    async def resolve(self, execution_id: str, entries: list[dict[str, Any]],
                      render: Callable[[Any], Any], on_secret: Callable[[Any], None],
                      resolved: dict[str, Any] | None = None,
                      render_owned: Callable[[Mapping[str, Any], Any], Any] | None = None) -> dict[str, Any]:
        """Every entry's values by name; `resolved` (filled as entries resolve) is what the render
        context shows as `keychain`, so later entries read earlier ones. An entry inherited from a parent
        renders with `render_owned(owner, value)` (its owner's context) when that is given."""
        out: dict[str, Any] = resolved if resolved is not None else {}
        for entry in entries:
            name = str(entry.get("name"))
            owner = entry.get("owner")
            entry_render = render
            if isinstance(owner, Mapping) and render_owned is not None:
                entry_render = functools.partial(render_owned, owner)
            value = await self._entry(execution_id, entry, entry_render)
            for item in (value.values() if isinstance(value, Mapping) else [value]):
                on_secret(item)
            out[name] = value
        return out

    async def _entry(self, execution_id: str, entry: Mapping[str, Any],
                     render: Callable[[Any], Any]) -> dict[str, Any]:
        kind = entry.get("kind")
        name = entry.get("name")
        if kind == "credential":
            ref = str(entry.get("ref") or entry.get("credential"))
            try:
                credential = await self.credentials.get(ref)
            except MissingCredentialError as exc:
                raise KeychainError(f"keychain '{name}': {exc}", "missing_credential") from None
            return dict(credential.data)
        if kind == "static":
            return dict(render(entry.get("map") or {}))
        if kind == "bearer":
            return {"token": render(entry.get("token"))}
        if kind == "oauth2":
            return await self._oauth(scope_key(execution_id, entry), entry, render)
        if kind in ("secrets", "secret_manager"):
            provider = entry.get("provider")
            if provider not in SUPPORTED_PROVIDERS:
                raise KeychainError(f"keychain '{name}': secret provider '{provider}' is not reachable "
                                    f"from this worker; supported here: {', '.join(SUPPORTED_PROVIDERS)}",
                                    "missing_credential")
            out = {}
            for fieldname, variable in (entry.get("map") or {}).items():
                if variable not in self.environ:
                    raise KeychainError(f"keychain '{name}': environment variable '{variable}' (for "
                                        f"'{fieldname}') is not set on this worker", "missing_credential")
                out[fieldname] = self.environ[variable]
            return out
        if kind == "google_id_token":
            return await self._google(scope_key(execution_id, entry), entry, render)
        raise KeychainError(f"keychain '{name}': unknown kind '{kind}'", "validation")

    async def _google(self, key: str, entry: Mapping[str, Any],
                      render: Callable[[Any], Any]) -> dict[str, Any]:
        cached = self._cache.get(key)
        if cached is not None and (cached.expires_at is None or time.time() < cached.expires_at
                                   or not entry.get("auto_renew")):
            return cached.response
        name = entry.get("name")
        audience = render(entry.get("target_audience"))
        where = f"keychain '{name}': cannot mint a Google ID token for '{audience}'"
        try:
            sa_key = service_account_key(await self._service_account(entry, render))
            token = await mint_id_token(sa_key, str(audience), token_url=self.google_token_url,
                                        http=self.http)
        except IdTokenError as exc:
            raise KeychainError(f"{where}: {exc}", exc.kind, exc.retryable) from None
        expires_at = token["expires_at"]
        self._cache[key] = _Token(token, float(expires_at) - 60 if expires_at is not None else None)
        return token

    async def _service_account(self, entry: Mapping[str, Any], render: Callable[[Any], Any]) -> Any:
        """The service account key: the credential `auth` names, or `service_account_secret` (the key's
        JSON, or the name of a credential holding it)."""
        name = entry.get("name")
        source = render(entry.get("auth"))
        if source is None:
            secret = render(entry.get("service_account_secret"))
            if isinstance(secret, Mapping) or (isinstance(secret, str) and secret.lstrip().startswith("{")):
                return secret
            source = secret
        if not isinstance(source, str) or not source:
            raise KeychainError(f"keychain '{name}': 'auth' or 'service_account_secret' must name a "
                                "credential or hold the service account key's JSON", "validation")
        try:
            credential = await self.credentials.get(source)
        except MissingCredentialError as exc:
            raise KeychainError(f"keychain '{name}': {exc}", "missing_credential") from None
        return dict(credential.data)

    async def _oauth(self, key: str, entry: Mapping[str, Any],
                     render: Callable[[Any], Any]) -> dict[str, Any]:
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and (cached.expires_at is None or now < cached.expires_at
                                   or not entry.get("auto_renew")):
            return cached.response
        request = render({"endpoint": entry.get("endpoint"), "method": entry.get("method") or "POST",
                          "headers": entry.get("headers") or {}, "data": entry.get("data") or {}})
        response = await self._request_token(str(entry.get("name")), request)
        expires_in = response.get("expires_in")
        expires_at = now + float(expires_in) - 5 if isinstance(expires_in, (int, float)) else None
        self._cache[key] = _Token(response, expires_at)
        return response

    async def _request_token(self, name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        client = self.http or httpx.AsyncClient(timeout=30)
        try:
            headers = dict(request.get("headers") or {})
            data = request.get("data")
            is_json = "json" in str(headers.get("Content-Type", headers.get("content-type", ""))).lower()
            response = await client.request(
                str(request.get("method", "POST")).upper(), str(request.get("endpoint")), headers=headers,
                json=data if is_json else None, data=None if is_json else data)
        except httpx.HTTPError as exc:
            raise KeychainError(f"keychain '{name}': the token request to {request.get('endpoint')} "
                                f"failed: {type(exc).__name__}", "connection", retryable=True) from None
        finally:
            if self.http is None:
                await client.aclose()
        if response.status_code >= 400:
            raise KeychainError(f"keychain '{name}': the token endpoint answered {response.status_code}",
                                "auth")
        try:
            body = response.json()
        except ValueError:
            raise KeychainError(f"keychain '{name}': the token endpoint did not answer JSON",
                                "auth") from None
        if not isinstance(body, dict) or "access_token" not in body:
            raise KeychainError(f"keychain '{name}': the token response has no access_token", "auth")
        return body

    async def tokens(self, execution_id: str, texts: str, on_secret: Callable[[Any], None]) -> dict[str, str]:
        """Bearer tokens for every `token('name')` the step's templates call (spec section 10)."""
        out: dict[str, str] = {}
        for name in sorted(set(_TOKEN_CALL.findall(texts))):
            try:
                credential = await self.credentials.get(name)
            except MissingCredentialError as exc:
                raise KeychainError(f"token('{name}'): {exc}", "missing_credential") from None
            data = dict(credential.data)
            token = data.get("access_token") or data.get("token")
            if not token:
                endpoint = data.get("token_url") or data.get("endpoint")
                if not endpoint:
                    raise KeychainError(f"token('{name}'): credential '{name}' has neither a token nor a "
                                        "token_url to request one from", "auth")
                form = {k: v for k, v in data.items()
                        if k in ("client_id", "client_secret", "scope", "audience", "grant_type")}
                form.setdefault("grant_type", "client_credentials")
                response = await self._oauth(f"{execution_id}:token:{name}",
                                             {"name": name, "endpoint": endpoint, "data": form,
                                              "auto_renew": True}, lambda v: v)
                token = response["access_token"]
            on_secret(token)
            out[name] = str(token)
        return out
