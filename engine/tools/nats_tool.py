"""The nats tool (spec section 3): key-value, object store and publishing on NATS.

Target: `auth`, a credential with `url` and optional `user`/`password`, `token` or `creds` (a .creds
file's path or text); without `auth`, the deployment's own NATS (the URL the worker was started with).
The NATS client calls live in engine.bus.nats_ops (the one package that imports nats).

Operations and results:
- kv_put (`bucket`, `key`, `value`) → `{bucket, key, revision}`;
- kv_get (`bucket`, `key`) → `{bucket, key, value, revision}`; `value` and `revision` are null when the
  key is absent or deleted;
- kv_delete (`bucket`, `key`) → `{bucket, key, deleted: true}` (a delete marker is written whether or
  not the key existed, so a retried delete is harmless);
- publish (`subject`, `data`, optional `headers`) → `{subject, seq, stream}` when a JetStream stream
  takes the subject (the server stored it), else `{subject}` (a core publish, flushed to the server);
- object_put (`bucket`, `name`, `data`) → `{bucket, name, size, digest}`;
- object_get (`bucket`, `name`) → `{bucket, name, data, size}`; `data` and `size` null when absent.
Buckets are created on first use (KV and object store alike). KV values and objects are stored as
JSON text, so a get returns what was put (a string comes back a string); a value another client wrote
that is not JSON comes back as text, and bytes that are not UTF-8 as base64 with `encoding: base64`.
A published `data` string is sent as its UTF-8 bytes, anything else as JSON.
Errors: unreachable → `connection` (retryable), refused login → `auth`, time limit → `timeout`,
a missing or bad bucket/key/subject, or an unknown operation → `validation`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any

from engine.bus.nats_ops import NatsEndpoint, NatsOpError, NatsOps, Stored
from engine.dsl.model import NATS_OPERATIONS
from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.support import Attempt, ToolFailure, guarded, operation_of
from engine.tools.values import to_json_value


class NatsTool:
    kind = "nats"

    def __init__(self, default_url: str | None = None, ops: NatsOps | None = None) -> None:
        self.default_url = default_url or None
        self._ops = ops or NatsOps()

    async def close(self) -> None:
        await self._ops.close()

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        config = attempt.config
        operation = operation_of(config, "nats", NATS_OPERATIONS)
        endpoint = await self._endpoint(attempt)
        action = {"kv_put": _kv_put, "kv_get": _kv_get, "kv_delete": _kv_delete, "publish": _publish,
                  "object_put": _object_put, "object_get": _object_get}[operation]
        try:
            async with asyncio.timeout(attempt.timeout):
                data = await action(self._ops, endpoint, config)
        except NatsOpError as exc:
            raise ToolFailure(exc.kind, exc.message, retryable=exc.retryable, type="NatsOpError") from None
        return ResultEnvelope.ok(data, operation=operation)

    async def _endpoint(self, attempt: Attempt) -> NatsEndpoint:
        auth = attempt.config.get("auth")
        if not auth:
            if self.default_url is None:
                raise ToolFailure("validation", "the nats tool needs 'auth' (a credential with 'url'): "
                                                "this worker was not given a NATS of its own")
            return NatsEndpoint(self.default_url)
        fields = await attempt.credential(auth, tool="nats") or {}
        url = fields.get("url") or fields.get("servers") or fields.get("nats_url")
        if isinstance(url, list):
            url = ",".join(str(u) for u in url)
        if not isinstance(url, str) or not url:
            raise ToolFailure("validation", "the nats credential needs 'url' (nats://host:4222), with "
                                            "optional 'user'/'password', 'token' or 'creds'")
        user = fields.get("user") or fields.get("username")
        secrets = {k: fields.get(k) for k in ("password", "token", "creds")}
        attempt.keep_secret(*(v for v in secrets.values() if isinstance(v, str)))
        return NatsEndpoint(url=url, user=str(user) if user else None,
                            password=_text(secrets["password"]), token=_text(secrets["token"]),
                            creds=_text(secrets["creds"]))


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _name(config: Mapping[str, Any], key: str, operation: str) -> str:
    value = config.get(key)
    if isinstance(value, bool) or value is None or value == "":
        raise ToolFailure("validation", f"nats {operation} needs '{key}'")
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise ToolFailure("validation", f"nats {operation}: '{key}' must be a name, got "
                                        f"{type(value).__name__}")
    return value


def _encode_json(value: Any) -> bytes:
    return json.dumps(to_json_value(value, strict=False), ensure_ascii=False,
                      separators=(",", ":")).encode()


def _decode(data: bytes) -> tuple[Any, str | None]:
    """(value, encoding): JSON when it parses, else the text, else base64 (encoding 'base64')."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
    try:
        return json.loads(text), None
    except ValueError:
        return text, None


def _read(stored: Stored, out: dict[str, Any], field: str) -> dict[str, Any]:
    if stored.data is None:
        out[field] = None
        return out
    value, encoding = _decode(stored.data)
    out[field] = value
    if encoding:
        out["encoding"] = encoding
    return out


async def _kv_put(ops: NatsOps, endpoint: NatsEndpoint, config: Mapping[str, Any]) -> Any:
    bucket, key = _name(config, "bucket", "kv_put"), _name(config, "key", "kv_put")
    revision = await ops.kv_put(endpoint, bucket, key, _encode_json(config.get("value")))
    return {"bucket": bucket, "key": key, "revision": revision}


async def _kv_get(ops: NatsOps, endpoint: NatsEndpoint, config: Mapping[str, Any]) -> Any:
    bucket, key = _name(config, "bucket", "kv_get"), _name(config, "key", "kv_get")
    stored = await ops.kv_get(endpoint, bucket, key)
    out = _read(stored, {"bucket": bucket, "key": key}, "value")
    out["revision"] = stored.revision
    return out


async def _kv_delete(ops: NatsOps, endpoint: NatsEndpoint, config: Mapping[str, Any]) -> Any:
    bucket, key = _name(config, "bucket", "kv_delete"), _name(config, "key", "kv_delete")
    deleted = await ops.kv_delete(endpoint, bucket, key)
    return {"bucket": bucket, "key": key, "deleted": deleted}


async def _publish(ops: NatsOps, endpoint: NatsEndpoint, config: Mapping[str, Any]) -> Any:
    subject = _name(config, "subject", "publish")
    data = config.get("data")
    payload = b"" if data is None else data.encode() if isinstance(data, str) else _encode_json(data)
    stream, seq = await ops.publish(endpoint, subject, payload, _headers(config.get("headers")))
    if seq is None:
        return {"subject": subject}
    return {"subject": subject, "seq": seq, "stream": stream}


def _headers(value: Any) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ToolFailure("validation", "nats publish: 'headers' must be a mapping of names to "
                                            "values") from None
    if not isinstance(value, Mapping):
        raise ToolFailure("validation", "nats publish: 'headers' must be a mapping of names to values")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


async def _object_put(ops: NatsOps, endpoint: NatsEndpoint, config: Mapping[str, Any]) -> Any:
    bucket, name = _name(config, "bucket", "object_put"), _name(config, "name", "object_put")
    info = await ops.object_put(endpoint, bucket, name, _encode_json(config.get("data")))
    return {"bucket": bucket, "name": name, **info}


async def _object_get(ops: NatsOps, endpoint: NatsEndpoint, config: Mapping[str, Any]) -> Any:
    bucket, name = _name(config, "bucket", "object_get"), _name(config, "name", "object_get")
    stored = await ops.object_get(endpoint, bucket, name)
    out = _read(stored, {"bucket": bucket, "name": name}, "data")
    out["size"] = stored.size
    return out
