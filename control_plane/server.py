"""Serve the REST API with uvicorn in the current event loop, beside the orchestrator of the same stack.

    stop = asyncio.Event()
    await serve_api(stack, host="127.0.0.1", port=8082, stop=stop)

The caller owns the process's signals (set `stop` to shut down); open event streams end when it is set
(clients resume with Last-Event-ID). Port 0 binds a free port; `bound` receives the actual one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import uvicorn

from control_plane.app import ApiServices, Mounted, create_app
from control_plane.errors import ControlPlaneError

if TYPE_CHECKING:
    from control_plane.stack import Stack

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers (the caller's stop event rules), telling when it
    listens."""

    def __init__(self, config: uvicorn.Config, ready: asyncio.Event | None) -> None:
        super().__init__(config)
        self._ready = ready

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._ready is not None:
            self._ready.set()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or ControlPlaneError naming the address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ControlPlaneError(f"cannot resolve the API host '{host}' ({exc.strerror})", where="--host",
                                fix="pass an address such as 127.0.0.1 or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ControlPlaneError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                                where="--host/--port",
                                fix="pick another port (--port), or stop what listens there") from None
    sock.setblocking(False)
    return sock


async def serve_api(stack: Stack, *, host: str, port: int, stop: asyncio.Event,
                    ready: asyncio.Event | None = None, bound: list[int] | None = None,
                    mounts: Sequence[Mounted] = (), state: Mapping[str, Any] | None = None) -> None:
    """Answer HTTP on host:port until `stop` is set; `ready` is set once listening. `mounts` are answered
    beside the API (each one's `running()` entered while serving)."""
    app = create_app(ApiServices.from_stack(stack), mounts=mounts, state=state)
    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    if bound is not None:
        bound.append(actual)
    config = uvicorn.Config(app, log_config=None, lifespan="off", ws="none", proxy_headers=False,
                            server_header=False, timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S))
    server = _Server(config, ready)

    async def stopper() -> None:
        await stop.wait()
        app.state.stopping.set()  # event streams end, so connections can close
        server.should_exit = True

    watcher = asyncio.create_task(stopper())
    mounts_task: asyncio.Task[None] | None = None
    log.info("the API listens on http://%s:%d", host if ":" not in host else f"[{host}]", actual)
    try:
        mounts_task = await _run_mounts(mounts, stop)
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits when it cannot start: an error of ours instead
        raise ControlPlaneError(f"the API server on {host}:{actual} failed to start (exit {exc.code})",
                                where="control_plane.server", fix="read the log above") from None
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if mounts_task is not None:
            if not stop.is_set():  # the server failed: no one will set it
                mounts_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mounts_task
        sock.close()
        app.state.stopping.set()
        await app.state.services.close()


async def _run_mounts(mounts: Sequence[Mounted], stop: asyncio.Event) -> asyncio.Task[None] | None:
    """A task holding each mount's `running()` until `stop` is set (so they stop with the server and their
    open streams end); returns once all are running, or raises what failed."""
    if not mounts:
        return None
    up = asyncio.Event()

    async def hold() -> None:
        async with contextlib.AsyncExitStack() as running:
            for mounted in mounts:
                await running.enter_async_context(mounted.running())
            up.set()
            await stop.wait()

    task = asyncio.create_task(hold(), name="noetl-api-mounts")
    started = asyncio.create_task(up.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    if task.done():
        task.result()
    return task
