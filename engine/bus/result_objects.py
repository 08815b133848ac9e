"""Large step results kept in the NATS object store (`output.store.kind: kv | object`, spec 16): the step
runner puts a result's stored bytes here, and any process reads them back by the reference's URI.

A reference is `nats-object://HOST:PORT/BUCKET/NAME`: the server the worker wrote to (never its
credentials), the deployment's bucket (`<bus prefix>_results`) and the object's name
(`<execution id>.<step>.<random>`). A reader connects with the URL its process was configured with for
that server (`configure`), else to `nats://HOST:PORT` itself. Objects are kept like result files: until
the deployment removes them.

Reading is synchronous (result handles resolve references lazily, inside template rendering): the
reader runs its own connection on an event loop in a daemon thread and waits for the answer.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import re
import threading
import uuid
from urllib.parse import urlsplit

from engine.bus.nats_ops import NatsEndpoint, NatsOpError, NatsOps

__all__ = ["OBJECT_SCHEME", "ObjectReader", "ResultObjects", "object_reader", "results_bucket"]

OBJECT_SCHEME = "nats-object"
READ_TIMEOUT_S = 60.0


def results_bucket(prefix: str) -> str:
    """The object store bucket of a deployment's results (a bucket name is [A-Za-z0-9_-]+)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", prefix) + "_results"


def _servers(url: str) -> list[tuple[str, str]]:
    """(host:port, the URL as given) for each server of a NATS URL list such as `nats://a:4222,b:4222`."""
    found = []
    for part in url.split(","):
        part = part.strip()
        if not part:
            continue
        split = urlsplit(part if "://" in part else f"nats://{part}")
        host = split.hostname or "127.0.0.1"
        found.append((f"{host}:{split.port or 4222}", part))
    return found


class ResultObjects:
    """Puts results into the deployment's bucket through the worker's connection (`url`)."""

    def __init__(self, url: str, prefix: str, ops: NatsOps | None = None) -> None:
        servers = _servers(url)
        if not servers:
            raise NatsOpError("validation", f"NATS url '{url}' names no server")
        self.server = servers[0][0]
        self.endpoint = NatsEndpoint(url)
        self.bucket = results_bucket(prefix)
        self._ops = ops or NatsOps()

    async def put(self, execution_id: str, step: str, payload: bytes) -> str:
        """Store `payload`; the URI that reads it back. Raises NatsOpError (kind `connection`, ...)."""
        name = f"{execution_id}.{re.sub(r'[^A-Za-z0-9_.-]', '_', step)}.{uuid.uuid4().hex}"
        await self._ops.object_put(self.endpoint, self.bucket, name, payload)
        return f"{OBJECT_SCHEME}://{self.server}/{self.bucket}/{name}"

    async def close(self) -> None:
        await self._ops.close()


class ObjectReader:
    """Reads `nats-object://` URIs synchronously, from any thread but its own."""

    def __init__(self, timeout_s: float = READ_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._urls: dict[str, str] = {}  # host:port -> the URL (with credentials) to connect with
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ops: NatsOps | None = None

    def configure(self, url: str) -> None:
        """Connect to these servers with `url` (it may carry credentials) when a URI names one of them."""
        with self._guard:
            for server, given in _servers(url):
                self._urls[server] = url if "," not in url else given

    def read(self, uri: str) -> bytes:
        """The bytes stored at `uri`. Raises NatsOpError: `not_found` for a missing object, `validation`
        for a URI that is not a result object's, `connection`/`timeout` when NATS does not answer."""
        split = urlsplit(uri)
        parts = split.path.strip("/").split("/", 1)
        if split.scheme != OBJECT_SCHEME or not split.netloc or len(parts) != 2 or not all(parts):
            raise NatsOpError("validation", f"'{uri}' is not a result object reference "
                                            f"({OBJECT_SCHEME}://HOST:PORT/BUCKET/NAME)")
        bucket, name = parts
        with self._guard:
            url = self._urls.get(split.netloc, f"nats://{split.netloc}")
        loop, ops = self._running()
        future = asyncio.run_coroutine_threadsafe(ops.object_get(NatsEndpoint(url), bucket, name), loop)
        try:
            stored = future.result(self.timeout_s)
        except TimeoutError:
            future.cancel()
            raise NatsOpError("timeout", f"reading the stored result {uri}: no answer from NATS within "
                                         f"{self.timeout_s:g} s", retryable=True) from None
        if stored.data is None:
            raise NatsOpError("not_found", f"the stored result {uri} is not in NATS (its bucket or object "
                                           "was removed)")
        return stored.data

    def _running(self) -> tuple[asyncio.AbstractEventLoop, NatsOps]:
        with self._guard:
            if self._loop is None or self._ops is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="noetl-result-objects", daemon=True).start()
                self._loop = loop
                # NatsOps' lock belongs to the loop it is first used on: make it there
                self._ops = asyncio.run_coroutine_threadsafe(_make_ops(), loop).result()
                atexit.register(self.close)
            return self._loop, self._ops

    def close(self) -> None:
        """Close the connection and stop the thread (at exit: a daemon thread left running an event loop
        with an open connection is torn down mid-flight by the interpreter's finalization)."""
        with self._guard:
            loop, ops, self._loop, self._ops = self._loop, self._ops, None, None
        if loop is None or ops is None or not loop.is_running():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(ops.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)


async def _make_ops() -> NatsOps:
    return NatsOps()


object_reader = ObjectReader()
