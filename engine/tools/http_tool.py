"""The http tool (spec section 3): a rendered request → httpx → `{status_code, headers, url, elapsed_ms,
data, body}` (`data` and `body` are the same parsed body, stored once); a status ≥ 400 is an error
envelope carrying the same fields.

Bodies: `json` is sent as JSON; `form` as form fields; `data` as form fields when a mapping, else as the
raw body; `body` as JSON when a mapping or list, else raw; `payload` (NoETL) becomes the query string of a
GET/HEAD/DELETE/OPTIONS request when a mapping, else the JSON body. `auth` names a credential whose
`headers` mapping, bearer `token` (or `access_token`) and/or `username`/`password` (basic) are applied.
Error kinds (spec 9): 429 → rate_limit, 401/403 → auth, 404 → not_found, other 4xx → client_error,
5xx → server_error; retryable: 429, 408 and 5xx. Such an error carries `code` `HTTP_<status>`,
`http_status` and `status`, and `retry_after` (seconds) from a Retry-After header. Refused, unreachable
or DNS → connection (retryable), time limit → timeout. With no time limit the connection attempt alone
is still bounded (30 s).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from engine.protocol.results import ResultEnvelope, http_error_kind
from engine.tools.base import ToolCall
from engine.tools.support import Attempt, ToolFailure, guarded, retry_after_seconds

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
_QUERY_METHODS = ("GET", "HEAD", "DELETE", "OPTIONS")
_FALSE = ("false", "0", "no", "off", "")


class HttpTool:
    kind = "http"

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client
        self._owned = client is None

    async def close(self) -> None:
        if self._owned and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _shared(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        config = attempt.config
        method = str(config.get("method") or "GET").upper()
        url = config.get("url") or config.get("endpoint")
        if not isinstance(url, str) or not url:
            raise ToolFailure("validation", "the http tool needs a 'url'")
        attempt.keep_secret(_url_password(url))
        headers = _str_map(config.get("headers"), "headers")
        params = _params(config.get("params"))
        body = _body(method, config, params)
        await _apply_auth(attempt, config.get("auth"), headers)
        verify = _verify(config.get("verify", True))
        follow = _flag(config.get("follow_redirects", True))
        limit = attempt.timeout
        timeout = httpx.Timeout(limit, connect=min(limit, CONNECT_TIMEOUT_S) if limit else CONNECT_TIMEOUT_S)
        request = dict(method=method, url=url, headers=headers, params=params or None,
                       timeout=timeout, follow_redirects=follow, **body)
        started = time.perf_counter()
        try:
            if verify is True:
                response = await _send(self._shared(), request, limit)
            else:
                async with httpx.AsyncClient(verify=verify) as client:
                    response = await _send(client, request, limit)
        except httpx.HTTPError as exc:
            raise _classify(exc, method, url, limit) from None
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        return _envelope(method, response, elapsed_ms)


async def _send(client: httpx.AsyncClient, request: dict[str, Any], limit: float | None) -> httpx.Response:
    async with asyncio.timeout(limit):  # the whole exchange, not just each read
        return await client.request(**request)


def _envelope(method: str, response: httpx.Response, elapsed_ms: float) -> ResultEnvelope:
    status = response.status_code
    data, encoding = _decode(response)
    url = str(response.url)
    # `data` and `body` are one object: stored once (engine.protocol.results.fold_body_alias)
    result = {"status_code": status, "headers": dict(response.headers), "url": url,
              "elapsed_ms": elapsed_ms, "data": data, "body": data}
    http = {"status": status, "method": method, "url": url, "elapsed_ms": elapsed_ms}
    meta: dict[str, Any] = {"http": http}
    if encoding:
        meta["body_encoding"] = encoding
    if status < 400:
        return ResultEnvelope.ok(result, **meta)
    kind, retryable = http_error_kind(status)
    snippet = response.text[:300].strip() if not encoding else ""
    message = f"{method} {url} returned {status} {response.reason_phrase}".rstrip()
    if snippet:
        message += f": {snippet}"
    return ResultEnvelope.fail(kind, message, retryable=retryable, code=f"HTTP_{status}", data=result,
                               type="HTTPStatusError", http_status=status,
                               retry_after=retry_after_seconds(response.headers.get("retry-after")), **meta)


def _decode(response: httpx.Response) -> tuple[Any, str | None]:
    content = response.content
    if not content:
        return None if response.request.method == "HEAD" else "", None
    ctype = response.headers.get("content-type", "").lower()
    if "json" in ctype:
        try:
            return response.json(), None
        except ValueError:
            return response.text, None
    textual = (ctype.startswith("text/") or "xml" in ctype or "x-www-form-urlencoded" in ctype
               or "javascript" in ctype or not ctype)
    if textual:
        return response.text, None
    try:
        return content.decode(response.encoding or "utf-8"), None
    except (UnicodeDecodeError, LookupError):
        return base64.b64encode(content).decode("ascii"), "base64"


def _classify(exc: httpx.HTTPError, method: str, url: str, limit: float | None) -> ToolFailure:
    where = f"{method} {url}"
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ToolFailure("timeout", f"{where} timed out ({name}) within {limit or CONNECT_TIMEOUT_S} s",
                           type=name)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.TooManyRedirects)):
        return ToolFailure("validation", f"{where}: {exc}", type=name)
    if isinstance(exc, (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError,
                        httpx.ProxyError)):
        text = str(exc) or name
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return ToolFailure("connection", f"{where}: the server's TLS certificate was not trusted "
                                             f"({text}); set 'verify' to a CA bundle path or false",
                               retryable=False, type=name)
        return ToolFailure("connection", f"{where} could not be reached: {text}", type=name)
    return ToolFailure("connection", f"{where} failed: {name}: {exc}", type=name)


# ------------------------------------------------------------------------------------ the request

def _decoded(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except ValueError:
            raise ToolFailure("validation",
                              f"{what} must be a mapping, got the text {value[:80]!r}") from None
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    value = _decoded(value, what)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ToolFailure("validation", f"{what} must be a mapping of names to values")
    return {str(k): (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v))
            for k, v in value.items() if v is not None}


def _params(value: Any) -> dict[str, Any]:
    value = _decoded(value, "params")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ToolFailure("validation", "params must be a mapping of names to values")
    return {str(k): _param_value(v) for k, v in value.items() if v is not None}


def _param_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [_param_value(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _body(method: str, config: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    given = [k for k in ("json", "payload", "data", "body", "form") if config.get(k) is not None]
    if len(given) > 1:
        raise ToolFailure("validation", f"an http request has one body; pick one of {', '.join(given)}")
    if not given:
        return {}
    key = given[0]
    value = config[key]
    if key == "json":
        return {"json": value}
    if key == "form":
        form = _decoded(value, "form")
        if not isinstance(form, Mapping):
            raise ToolFailure("validation", "form must be a mapping of field names to values")
        return {"data": {str(k): _param_value(v) for k, v in form.items()}}
    if key == "payload" and isinstance(value, Mapping) and method in _QUERY_METHODS:
        params.update({str(k): _param_value(v) for k, v in value.items() if v is not None})
        return {}
    if key == "data" and isinstance(value, Mapping):
        return {"data": {str(k): _param_value(v) for k, v in value.items()}}
    if isinstance(value, (Mapping, list)) or (key == "payload" and not isinstance(value, (str, bytes))):
        return {"json": value}
    return {"content": value if isinstance(value, bytes) else str(value)}


async def _apply_auth(attempt: Attempt, auth: Any, headers: dict[str, str]) -> None:
    fields = await attempt.credential(auth, tool="http")
    if not fields:
        return
    extra = fields.get("headers")
    if isinstance(extra, Mapping):
        headers.update({str(k): str(v) for k, v in extra.items()})
    token = fields.get("token") or fields.get("access_token") or fields.get("bearer")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif fields.get("username") is not None and fields.get("password") is not None:
        pair = f"{fields['username']}:{fields['password']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        attempt.keep_secret(headers["Authorization"])
    elif not isinstance(extra, Mapping):
        raise ToolFailure("validation", "the http credential has none of 'token', 'username'/'password' "
                                        "or 'headers'")
    if "Authorization" in headers:
        attempt.keep_secret(headers["Authorization"], headers["Authorization"].partition(" ")[2])


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


def _verify(value: Any) -> bool | ssl.SSLContext:
    if isinstance(value, str) and value.strip().lower() not in _FALSE + ("true", "1", "yes", "on"):
        try:
            return ssl.create_default_context(cafile=value)
        except (OSError, ssl.SSLError) as exc:
            raise ToolFailure("validation", f"verify: the CA bundle '{value}' cannot be loaded: {exc}") \
                from None
    return _flag(value)


def _url_password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None
