"""What every tool's `run` shares: the attempt's clock and secrets, classified failures, the envelope.

A tool writes its body as `async def body(attempt) -> ResultEnvelope` and raises `ToolFailure` for a
classified failure; `guarded(call, body)` turns failures into error envelopes (a missing credential,
an expired time limit and an unexpected exception included), redacts the credential values the
attempt used from everything it returns, stamps `duration_ms` and `attempt` into `meta`, and names the
tool kind as an error's `source`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback as tb
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from engine.dsl.model import parse_duration
from engine.protocol.results import ResultEnvelope
from engine.tools.auth import AuthConfigError, resolve_auth, secret_values
from engine.tools.base import MissingCredentialError, ToolCall
from engine.tools.redact import redact

log = logging.getLogger(__name__)


class ToolFailure(Exception):
    """A classified failure inside a tool; `guarded` makes it an error envelope."""

    def __init__(self, kind: str, message: str, *, retryable: bool | None = None,
                 code: str | int | None = None, type: str | None = None, data: Any = None,
                 traceback: str | None = None, meta: Mapping[str, Any] | None = None,
                 http_status: int | None = None, retry_after: float | None = None,
                 pg_code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.code = code
        self.type = type
        self.data = data
        self.traceback = traceback
        self.meta = dict(meta or {})
        self.http_status = http_status
        self.retry_after = retry_after
        self.pg_code = pg_code

    def envelope(self) -> ResultEnvelope:
        return ResultEnvelope.fail(self.kind, self.message, retryable=self.retryable, data=self.data,
                                   code=self.code, type=self.type, traceback=self.traceback,
                                   http_status=self.http_status, retry_after=self.retry_after,
                                   pg_code=self.pg_code, **self.meta)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds: a number of seconds, or an HTTP date (0 when it has passed)."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, round((when - (now or datetime.now(UTC))).total_seconds(), 3))


def config_timeout(value: Any) -> float | None:
    """The `timeout` key of a tool configuration in seconds (a number or a duration such as `30s`)."""
    if value is None or value == "":
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ToolFailure("validation", f"timeout: {exc}") from None
    if isinstance(seconds, str):
        raise ToolFailure("validation", f"timeout '{value}' is an unrendered template")
    return seconds


def effective_timeout(call: ToolCall) -> float | None:
    """The wall-clock limit of this attempt: the smaller of `call.timeout_s` and the config's `timeout`."""
    limits = [t for t in (call.timeout_s, config_timeout(call.config.get("timeout")))
              if t is not None and t > 0]
    return min(limits) if limits else None


@dataclass
class Attempt:
    """One attempt in progress: its call, its start time, the secret values it has seen."""

    call: ToolCall
    secrets: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    @property
    def config(self) -> Mapping[str, Any]:
        return self.call.config

    @property
    def timeout(self) -> float | None:
        return effective_timeout(self.call)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    async def credential(self, auth: Any, *, tool: str) -> dict[str, Any] | None:
        """The credential fields `auth` stands for; their secret values are redacted from the result."""
        try:
            fields = await resolve_auth(self.call, auth, tool=tool)
        except AuthConfigError as exc:
            raise ToolFailure("validation", str(exc)) from None
        if fields:
            self.secrets |= secret_values(fields)
        return fields

    def keep_secret(self, *values: str | None) -> None:
        self.secrets |= {v for v in values if v}


Body = Callable[[Attempt], Awaitable[ResultEnvelope]]


async def guarded(call: ToolCall, body: Body) -> ResultEnvelope:
    """Run `body`; every failure becomes a classified error envelope, never an exception."""
    attempt = Attempt(call)
    try:
        envelope = await body(attempt)
    except ToolFailure as exc:
        envelope = exc.envelope()
    except MissingCredentialError as exc:
        envelope = ResultEnvelope.fail("missing_credential", str(exc), code=exc.name)
    except TimeoutError:
        try:
            limit = effective_timeout(call)
        except ToolFailure:
            limit = call.timeout_s
        envelope = ResultEnvelope.fail("timeout", f"the {call.kind} tool did not finish within {limit} s")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in a tool: still an envelope, never a crashed worker
        log.exception("the %s tool failed unexpectedly", call.kind)
        envelope = ResultEnvelope.fail("internal", f"the {call.kind} tool failed unexpectedly: "
                                                   f"{type(exc).__name__}: {exc}",
                                       type=type(exc).__name__, traceback=tb.format_exc())
    return _finish(envelope.with_source(call.kind), attempt)


def _finish(envelope: ResultEnvelope, attempt: Attempt) -> ResultEnvelope:
    meta = dict(envelope.meta.model_extra or {})
    meta.update(duration_ms=attempt.elapsed_ms(), attempt=attempt.call.attempt)
    update: dict[str, Any] = {"meta": envelope.meta.model_validate(meta)}
    if attempt.secrets:  # by value only: masking by key name is the runtime's, at every boundary
        update["data"] = redact(envelope.data, attempt.secrets, secret_keys=())
        update["meta"] = envelope.meta.model_validate(redact(meta, attempt.secrets, secret_keys=()))
        if envelope.error is not None:
            update["error"] = envelope.error.model_validate(
                redact(envelope.error.model_dump(), attempt.secrets, secret_keys=()))
    return envelope.model_copy(update=update)


def run_in_thread(func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """`func(*args)` in a worker thread, as a future whose failure is never reported as "unretrieved"
    (after a time limit nobody may await it any more; the thread still runs to its end)."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


def read_script(uri: object) -> tuple[str, str]:
    """(text, path) of a `script: {uri}` that is a local path or a `file://` URI."""
    if not isinstance(uri, str) or not uri:
        raise ToolFailure("validation", "script needs a 'uri' (a local path or file:// URI)")
    parts = urlsplit(uri)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
    elif parts.scheme and len(parts.scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise ToolFailure("validation", f"script uri '{uri}': the '{parts.scheme}' scheme is not "
                                        "supported; use a local path or a file:// URI")
    else:
        path = Path(uri)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        raise ToolFailure("validation", f"script '{uri}' does not exist (looked at {path.resolve()})",
                          code="not_found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolFailure("validation", f"script '{uri}' cannot be read: {exc}") from None


def operation_of(config: Mapping[str, Any], kind: str, operations: tuple[str, ...]) -> str:
    """The `operation` of a tool that has several (qdrant, nats), or a validation failure naming them."""
    operation = config.get("operation")
    if operation not in operations:
        raise ToolFailure("validation",
                          f"{kind} operation '{operation}' is not one of {', '.join(operations)}")
    return str(operation)


def script_text(script: Any) -> tuple[str, str]:
    """(text, name) of a `script`: a local path or `file://` URI, `{uri}`, or `{source: {type: inline,
    code}}` / `{source: {type: file, path}}` (spec 16); remote sources are refused with the reason."""
    if isinstance(script, str):
        return read_script(script)
    if not isinstance(script, Mapping):
        raise ToolFailure("validation", "script must be a path or a mapping with 'uri' or 'source'")
    source = script.get("source")
    if isinstance(source, Mapping):
        kind = str(source.get("type") or "inline").lower()
        if kind == "inline":
            code = source.get("code")
            if not isinstance(code, str):
                raise ToolFailure("validation", "an inline script source needs 'code' (the source text)")
            return code, "<inline script>"
        if kind == "file":
            return read_script(source.get("path") or script.get("uri"))
        raise ToolFailure("validation", f"script source type '{kind}' is not supported here; use "
                                        "'inline' (code: ...) or 'file' (path: ...)")
    return read_script(script.get("uri"))


class TailBuffer:
    """The last `limit` bytes written to it; says whether anything was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self.truncated = False

    def write(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > 2 * self.limit:
            self._compact()

    def _compact(self) -> None:
        data = b"".join(self._chunks)
        if len(data) > self.limit:
            data = data[-self.limit:]
            self.truncated = True
        self._chunks = [data]
        self._size = len(data)

    def getvalue(self) -> bytes:
        self._compact()
        return self._chunks[0] if self._chunks else b""

    def text(self) -> str:
        return self.getvalue().decode("utf-8", errors="replace")
