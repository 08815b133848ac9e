"""NATS as a data service for playbooks (the `nats` tool, spec 3): key-value buckets, object stores and
publishing, on any NATS server. engine.tools.nats_tool calls this; only this package imports nats.

Buckets (KV and object store) are created on first use with the server's defaults (file storage, one
replica, one revision kept per key). Failures are `NatsOpError`s whose `kind` is an error kind of spec
section 9: a server that cannot be reached is `connection` (retryable), a refused login `auth`, a time
limit `timeout`, a bad bucket, key or subject name `validation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client, RawCredentials
from nats.js import JetStreamContext

from engine.bus.cluster import REPLICA_REFUSALS, default_replicas
from engine.errors import EngineError

log = logging.getLogger(__name__)

__all__ = ["NatsEndpoint", "NatsOpError", "NatsOps", "Stored"]


class NatsOpError(EngineError):
    """A NATS operation failed; `kind` and `retryable` classify it (spec section 9)."""

    code = "nats_error"

    def __init__(self, kind: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class NatsEndpoint:
    """Where and as whom to connect. `creds` is the path of a .creds file (or its text)."""

    url: str
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """What a get found: the bytes and their revision (KV) or size (object); None when absent."""

    data: bytes | None
    revision: int | None = None
    size: int | None = None


class NatsOps:
    """One connection per endpoint, opened on first use and kept until `close()`."""

    def __init__(self, *, connect_timeout_s: float = 3.0) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._connections: dict[NatsEndpoint, Client] = {}
        self._guard = asyncio.Lock()

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for nc in connections:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _js(self, endpoint: NatsEndpoint) -> JetStreamContext:
        return (await self._client(endpoint)).jetstream()

    async def _client(self, endpoint: NatsEndpoint) -> Client:
        async with self._guard:
            nc = self._connections.get(endpoint)
            if nc is not None and not nc.is_closed:
                return nc
            nc = await self._connect(endpoint)
            self._connections[endpoint] = nc
            return nc

    async def _connect(self, endpoint: NatsEndpoint) -> Client:
        # a few quick tries, then a clear error (max_reconnect_attempts=0 would retry forever); a connection
        # lost later is given up after those tries too, and the next operation connects again
        options: dict[str, Any] = {"connect_timeout": self.connect_timeout_s, "allow_reconnect": True,
                                   "max_reconnect_attempts": 2, "reconnect_time_wait": 0.25,
                                   "name": "noetl-nats-tool"}
        if endpoint.user is not None:
            options.update(user=endpoint.user, password=endpoint.password or "")
        if endpoint.token is not None:
            options["token"] = endpoint.token
        if endpoint.creds is not None:
            options["user_credentials"] = _creds(endpoint.creds)

        async def quiet(exc: Exception) -> None:
            log.debug("nats tool connection to %s: %r", endpoint.url, exc)

        servers = [part.strip() for part in endpoint.url.split(",") if part.strip()]  # a cluster's list
        target: str | list[str] = servers if len(servers) > 1 else servers[0] if servers else endpoint.url
        try:
            nc = await asyncio.wait_for(nats.connect(target, error_cb=quiet, **options),
                                        3 * self.connect_timeout_s + 1)
        except (nats.errors.NoServersError, OSError, TimeoutError, nats.errors.TimeoutError) as exc:
            raise NatsOpError("connection", f"NATS at {endpoint.url} could not be reached within "
                                            f"{self.connect_timeout_s:g} s ({type(exc).__name__})",
                              retryable=True) from None
        except nats.errors.Error as exc:
            text = str(exc).lower()
            if "authorization" in text or "authentication" in text or "permissions" in text:
                raise NatsOpError("auth", f"NATS at {endpoint.url} refused the login: {exc}") from None
            raise NatsOpError("connection", f"NATS at {endpoint.url}: {exc}", retryable=True) from None
        except ValueError as exc:  # a malformed URL
            raise NatsOpError("validation", f"NATS url '{endpoint.url}': {exc}") from None
        return nc

    async def _drop(self, endpoint: NatsEndpoint) -> None:
        """Forget a connection that failed, so the next attempt connects again."""
        async with self._guard:
            nc = self._connections.pop(endpoint, None)
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    # ---------------------------------------------------------------------------------- key-value
    async def kv_put(self, endpoint: NatsEndpoint, bucket: str, key: str, value: bytes) -> int:
        """Store `value` under `key`; the revision it got."""
        async def put() -> int:
            kv = await self._bucket(endpoint, bucket)
            return int(await kv.put(key, value))
        return await self._run(endpoint, f"kv_put {bucket}/{key}", put)

    async def kv_get(self, endpoint: NatsEndpoint, bucket: str, key: str) -> Stored:
        """The value under `key` and its revision; `Stored(None)` when absent or deleted."""
        async def get() -> Stored:
            kv = await self._bucket(endpoint, bucket)
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:  # also KeyDeletedError: a delete marker
                return Stored(None)
            return Stored(entry.value or b"", revision=int(entry.revision or 0))
        return await self._run(endpoint, f"kv_get {bucket}/{key}", get)

    async def kv_delete(self, endpoint: NatsEndpoint, bucket: str, key: str) -> bool:
        """Write a delete marker for `key` (whether it existed or not)."""
        async def delete() -> bool:
            kv = await self._bucket(endpoint, bucket)
            return bool(await kv.delete(key))
        return await self._run(endpoint, f"kv_delete {bucket}/{key}", delete)

    async def _bucket(self, endpoint: NatsEndpoint, bucket: str) -> Any:
        js = await self._js(endpoint)
        try:
            return await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            replicas = await self._replicas(endpoint)
            try:
                return await js.create_key_value(bucket=bucket, replicas=replicas)
            except nats.js.errors.APIError as exc:
                if replicas == 1 or exc.err_code not in REPLICA_REFUSALS:
                    raise
                return await js.create_key_value(bucket=bucket, replicas=1)

    # ---------------------------------------------------------------------------------- objects
    async def object_put(self, endpoint: NatsEndpoint, bucket: str, name: str,
                         data: bytes) -> dict[str, Any]:
        """Store an object; `{size, digest}` as the server recorded them."""
        async def put() -> dict[str, Any]:
            store = await self._object_store(endpoint, bucket)
            info = await store.put(name, data)
            return {"size": int(info.size or 0), "digest": info.digest}
        return await self._run(endpoint, f"object_put {bucket}/{name}", put)

    async def object_get(self, endpoint: NatsEndpoint, bucket: str, name: str) -> Stored:
        """The object's bytes and size; `Stored(None)` when absent or deleted."""
        async def get() -> Stored:
            store = await self._object_store(endpoint, bucket)
            try:
                result = await store.get(name)
            except (nats.js.errors.ObjectNotFoundError, nats.js.errors.ObjectDeletedError,
                    nats.js.errors.NotFoundError):
                return Stored(None)
            data = result.data or b""
            return Stored(data, size=len(data))
        return await self._run(endpoint, f"object_get {bucket}/{name}", get)

    async def _object_store(self, endpoint: NatsEndpoint, bucket: str) -> Any:
        js = await self._js(endpoint)
        try:
            return await js.object_store(bucket)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            replicas = await self._replicas(endpoint)
            try:
                return await js.create_object_store(bucket, replicas=replicas)
            except nats.js.errors.APIError as exc:
                if replicas == 1 or exc.err_code not in REPLICA_REFUSALS:
                    raise
                return await js.create_object_store(bucket, replicas=1)

    async def _replicas(self, endpoint: NatsEndpoint) -> int:
        """A new bucket's replicas: 3 on a cluster of 3 or more JetStream servers, else 1 (as the streams);
        a server that finds no peers for 3 gets 1."""
        info = getattr(await self._client(endpoint), "_server_info", None)
        return default_replicas(info) if isinstance(info, dict) else 1

    # ---------------------------------------------------------------------------------- publishing
    async def publish(self, endpoint: NatsEndpoint, subject: str, data: bytes,
                      headers: dict[str, str] | None = None) -> tuple[str | None, int | None]:
        """Publish; (stream, seq) when a JetStream stream takes the subject (the server stored it),
        else (None, None) after a core publish flushed to the server."""
        async def publish() -> tuple[str | None, int | None]:
            nc = await self._client(endpoint)
            js = nc.jetstream()
            try:
                stream = await js.find_stream_name_by_subject(subject)
            except nats.js.errors.NotFoundError:
                stream = None
            if stream is not None:
                ack = await js.publish(subject, data, headers=headers or None, stream=stream)
                return ack.stream, int(ack.seq)
            await nc.publish(subject, data, headers=headers or None)
            await nc.flush()
            return None, None
        return await self._run(endpoint, f"publish to {subject}", publish)

    # ---------------------------------------------------------------------------------- errors
    async def _run(self, endpoint: NatsEndpoint, what: str, action: Any) -> Any:
        try:
            return await action()
        except NatsOpError:
            raise
        except nats.js.errors.ServiceUnavailableError:
            raise NatsOpError("connection", f"NATS {what}: JetStream is not available on {endpoint.url} "
                                            "(is the server started with -js?)", retryable=True) from None
        except (nats.js.errors.InvalidBucketNameError, nats.js.errors.InvalidKeyError,
                nats.js.errors.InvalidObjectNameError, nats.errors.BadSubjectError) as exc:
            raise NatsOpError("validation", f"NATS {what}: {type(exc).__name__}: {exc}") from None
        except nats.js.errors.APIError as exc:
            description = getattr(exc, "description", None) or str(exc)
            kind = "auth" if "permission" in description.lower() else "validation"
            raise NatsOpError(kind, f"NATS {what}: the server refused it: {description}") from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise NatsOpError("timeout", f"NATS {what}: no answer from {endpoint.url} in time",
                              retryable=True) from None
        except nats.errors.NoRespondersError:
            raise NatsOpError("connection", f"NATS {what}: no JetStream on {endpoint.url} answered "
                                            "(is the server started with -js?)", retryable=True) from None
        except (nats.errors.ConnectionClosedError, nats.errors.StaleConnectionError,
                nats.errors.UnexpectedEOF, OSError) as exc:
            await self._drop(endpoint)
            raise NatsOpError("connection", f"NATS {what}: the connection to {endpoint.url} was lost "
                                            f"({type(exc).__name__})", retryable=True) from None
        except nats.errors.Error as exc:
            raise NatsOpError("validation", f"NATS {what}: {type(exc).__name__}: {exc}") from None


def _creds(value: str) -> Any:
    """A .creds file path, or the file's text itself (kept in a stored credential, never on disk)."""
    if "-----BEGIN NATS USER JWT-----" in value:
        return RawCredentials(value)
    return value
