"""Serving the stack in this process: the orchestrator and workers, the REST API with the MCP server at
/mcp, the agents beside them, and the components report `noetl dev status` reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.errors import ControlPlaneError, ForbiddenError, UnauthorizedError
from control_plane.services.auth import AuthService
from control_plane.stack import Stack, StackConfig
from engine.runtime import idle_watchdog
from noetl.devstack import cli_token_file, components_file, write_cli_token
from noetl.insights import open_insights
from noetl.settings import stack_config

if TYPE_CHECKING:
    from mcp_server.http import McpHttpApp

API_READY_S = 30.0  # how long the REST API may take to listen
COMPONENTS_EVERY_S = 1.0  # how often the serving stack writes what each component is doing


async def _report_components(stack: Stack, api_task: asyncio.Task[None] | None, insights: Any,
                             stop: asyncio.Event) -> None:
    """Write what each component of the serving stack is doing, every COMPONENTS_EVERY_S (dev status)."""
    path = components_file(stack.config.home)
    while not stop.is_set():
        found = stack.components()
        if api_task is not None:
            found.append({"name": "api", "pid": os.getpid(), "restarts": 0, "detail": None,
                          "status": "down" if api_task.done() else "up"})
        if insights is not None:
            found.extend(insights.components(os.getpid()))
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"pid": os.getpid(), "at": time.time(), "components": found}))
        scratch.replace(path)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), COMPONENTS_EVERY_S)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def http_mount(stack: Stack, host: str) -> McpHttpApp:
    """The MCP server as streamable HTTP at /mcp of the control plane's server: a request without a known
    token is 401 there; each tool call goes to the REST API with the request's own token."""
    from mcp_server.http import McpHttpApp  # the mcp SDK only where the API is served

    assert stack.store is not None, "the stack is not started"
    auth = AuthService(stack.store)

    async def known(token: str) -> bool:
        try:
            await auth.authorize(token, "viewer")
        except (UnauthorizedError, ForbiddenError):
            return False
        return True

    return McpHttpApp(authenticate=known, host=host)


async def start_api(stack: Stack, host: str, port: int, stop: asyncio.Event,
                     state: dict[str, Any] | None = None) -> tuple[asyncio.Task[None], str]:
    """Serve the REST API in this loop; returns its task and URL once it listens."""
    from control_plane.server import serve_api  # fastapi and uvicorn only where the API is served

    ready = asyncio.Event()
    bound: list[int] = []
    task = asyncio.create_task(serve_api(stack, host=host, port=port, stop=stop, ready=ready, bound=bound,
                                         mounts=[http_mount(stack, host)], state=state))
    ready_wait = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, ready_wait}, timeout=API_READY_S, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        ready_wait.cancel()
        if task in done:
            exc = task.exception()
            if isinstance(exc, ControlPlaneError):  # it says where and how to fix it
                raise exc
            raise ControlPlaneError(f"the REST API could not serve on {host}:{port}"
                                    + (f" ({exc})" if exc else ""), where="--api-port / --port",
                                    fix="pick a free port (NOETL_API_PORT, or 0 for any free one)")
        task.cancel()
        raise ControlPlaneError(f"the REST API did not listen on {host}:{port} within {API_READY_S:g} s",
                                where="--api-port / --port", fix="read the process' log")
    return task, f"http://{_url_host(host)}:{bound[-1] if bound else port}"


async def serve(config_overrides: dict[str, Any], state_file: Path | None,
                 api: tuple[str, int] | None = None, indexer: bool = False, agent: bool = False,
                 exporter: bool = False) -> None:
    """Host the stack (and the REST API on `api` = (host, port)) until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = stack_config(**config_overrides)
    embedded = config.nats_url is None or config.pg_dsn is None
    with idle_watchdog.lease(config.home) if embedded else contextlib.nullcontext():
        if state_file is not None:  # the dev stack keeps its servers until `noetl dev down`
            idle_watchdog.cancel(config.home)
        failure = await _serve_stack(config, stop, state_file, api, indexer, agent, exporter)
    if state_file is not None:
        with contextlib.suppress(OSError):
            state_file.unlink()
    if failure is not None:  # the process exits non-zero, the error on one line
        raise failure


async def _serve_stack(config: StackConfig, stop: asyncio.Event, state_file: Path | None,
                       api: tuple[str, int] | None, indexer: bool, agent: bool,
                       exporter: bool = False) -> BaseException | None:
    """Start the stack (and the API), write the state file, and serve until `stop`; the API's error."""
    failure: BaseException | None = None
    async with Stack(config) as stack:
        api_task: asyncio.Task[None] | None = None
        api_url: str | None = None
        insights = None
        if api is not None:
            insights = await open_insights(stack, indexer=indexer, agent=agent, exporter=exporter)
            api_task, api_url = await start_api(stack, api[0], api[1], stop, insights.state)
        cli_token_id: str | None = None
        try:
            if state_file is not None and api_url is not None:
                cli_token_id = await _issue_cli_token(stack)
            if state_file is not None:
                state = {"pid": os.getpid(), "ready": True, "nats_url": stack.nats_url,
                         "pg_dsn": stack.pg_dsn, "home": str(stack.config.home)}
                if api_url is not None:
                    state["api_url"] = api_url
                state_file.write_text(json.dumps(state))
            print(f"serving: nats {stack.nats_url}" + (f", api {api_url}" if api_url else ""),
                  file=sys.stderr, flush=True)
            if stack.supervisor is not None:  # `noetl dev up` on a stack with a crashed server: try again
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stack.supervisor.reset)
            reporting = asyncio.create_task(_report_components(stack, api_task, insights, stop)) \
                if state_file is not None else None
            triggers = _start_triggers(stack, stop) if api is not None else None
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({stopping, *([api_task] if api_task else [])},
                               return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if reporting is not None:
                reporting.cancel()
            if triggers is not None:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(triggers, timeout=10)
        finally:
            stop.set()  # the API stopped by itself (an error), or we were told to stop: stop everything
            if api_task is not None:
                try:
                    await asyncio.wait_for(api_task, timeout=10)
                except (asyncio.CancelledError, TimeoutError):
                    api_task.cancel()  # a stream that would not end: the process ends anyway
                except Exception as exc:
                    failure = exc
            if insights is not None:
                await insights.close()
            if cli_token_id is not None:
                await _revoke_cli_token(stack, cli_token_id)
    return failure


def _start_triggers(stack: Stack, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """The trigger runner (docs/triggers.md) where this process orchestrates; NOETL_TRIGGERS=0: none."""
    if stack.orchestrator is None or os.environ.get("NOETL_TRIGGERS", "1") == "0":
        return None
    from control_plane.services.triggers import TriggerService
    from control_plane.triggers.runner import TriggerRunner

    assert stack.store is not None and stack.bus is not None
    runner = TriggerRunner(TriggerService(stack.store, stack.executions, stack.bus), stack.bus)
    return asyncio.create_task(runner.run(stop, asyncio.Event()), name="noetl-triggers")


async def _issue_cli_token(stack: Stack) -> str:
    """An operator token for this home's `noetl run` to reach the API with (noetl.fastrun); its id."""
    assert stack.store is not None, "the stack is not started"
    info, token = await AuthService(stack.store).create_token("dev-cli", "operator")
    write_cli_token(cli_token_file(stack.config.home), token)
    return info.token_id


async def _revoke_cli_token(stack: Stack, token_id: str) -> None:
    """The token goes with the stack: its file removed, and revoked while the store still answers."""
    with contextlib.suppress(OSError):
        cli_token_file(stack.config.home).unlink()
    if stack.store is not None:
        with contextlib.suppress(Exception):  # a store already gone: the token dies with its stack's data
            await AuthService(stack.store).revoke(token_id)
