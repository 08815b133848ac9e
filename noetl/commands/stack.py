"""`noetl dev up|down|status`, `noetl server start`, `noetl worker start`: the runtime's processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from control_plane import home_processes
from control_plane import worker_process as worker_processes
from control_plane.errors import ControlPlaneError
from control_plane.services.auth import AuthService
from control_plane.stack import Stack, StackConfig
from control_plane.store import open_store
from control_plane.store.secret_key import load_secret_key
from engine.runtime import eventloop, idle_watchdog
from engine.runtime.embedded import pid_alive, stop_nats, stop_postgres
from noetl.settings import DEFAULT_API_PORT, api_port, noetl_home, stack_config

API_READY_S = 30.0  # how long the REST API may take to listen
COMPONENTS_EVERY_S = 1.0  # how often the serving stack writes what each component is doing

dev_app = typer.Typer(help="A local NoETL (NATS, Postgres, orchestrator, a worker pool) in the background.",
                      no_args_is_help=True)
server_app = typer.Typer(help="The orchestrator and the REST API as a long-running process.",
                         no_args_is_help=True)
worker_app = typer.Typer(help="A worker pool as a long-running process.", no_args_is_help=True)


def dev_state_file(home: Path | None = None) -> Path:
    return (home or noetl_home()) / "dev.json"


def components_file(home: Path | None = None) -> Path:
    return (home or noetl_home()) / "dev-components.json"


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


def running_dev_stack(home: Path | None = None) -> dict[str, Any] | None:
    """The dev stack's state when its serving process is alive, else None."""
    path = dev_state_file(home)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("ready") and pid_alive(int(state.get("pid", 0))) else None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


async def _start_api(stack: Stack, host: str, port: int, stop: asyncio.Event,
                     state: dict[str, Any] | None = None) -> tuple[asyncio.Task[None], str]:
    """Serve the REST API in this loop; returns its task and URL once it listens."""
    from control_plane.server import serve_api  # fastapi and uvicorn only where the API is served

    ready = asyncio.Event()
    bound: list[int] = []
    from noetl.commands.mcp import http_mount  # the MCP server at /mcp, beside the API

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


async def _serve(config_overrides: dict[str, Any], state_file: Path | None,
                 api: tuple[str, int] | None = None, indexer: bool = False, agent: bool = False) -> None:
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
        failure = await _serve_stack(config, stop, state_file, api, indexer, agent)
    if state_file is not None:
        with contextlib.suppress(OSError):
            state_file.unlink()
    if failure is not None:  # the process exits non-zero, the error on one line
        raise failure


async def _serve_stack(config: StackConfig, stop: asyncio.Event, state_file: Path | None,
                       api: tuple[str, int] | None, indexer: bool, agent: bool) -> BaseException | None:
    """Start the stack (and the API), write the state file, and serve until `stop`; the API's error."""
    failure: BaseException | None = None
    async with Stack(config) as stack:
        api_task: asyncio.Task[None] | None = None
        api_url: str | None = None
        insights = None
        if api is not None:
            from noetl.insights import open_insights  # the agents: only where the API is served

            insights = await open_insights(stack, indexer=indexer, agent=agent)
            api_task, api_url = await _start_api(stack, api[0], api[1], stop, insights.state)
        try:
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
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({stopping, *([api_task] if api_task else [])},
                               return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if reporting is not None:
                reporting.cancel()
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
    return failure


async def _create_admin_token(state: dict[str, Any], name: str) -> str:
    """A fresh admin token for the dev stack's user (only its hash is stored)."""
    config = stack_config()
    store = await open_store(str(state["pg_dsn"]), load_secret_key(config.home, config.secret_key))
    try:
        _, token = await AuthService(store).create_token(name, "admin")
    finally:
        await store.close()
    return token


@dev_app.command("up")
def dev_up(
    concurrency: Annotated[int, typer.Option(help="Concurrent steps of the default worker pool.")] = 4,
    wait_s: Annotated[float, typer.Option(help="How long to wait for the stack to be ready.")] = 60.0,
    port: Annotated[int | None, typer.Option(
        "--api-port", min=0, max=65535, show_default=False,
        help=f"Serve the REST API on 127.0.0.1 at this port (NOETL_API_PORT; default {DEFAULT_API_PORT}; "
             "0 = a free port).")] = None,
) -> None:
    """Start the local stack and its REST API in the background (or report the one already running);
    prints where they are and a fresh admin token for the API (shown only here).
    Its NATS and Postgres stay up until `noetl dev down` (NOETL_IDLE_STOP does not apply)."""
    home = noetl_home()
    port = api_port() if port is None else port
    home.mkdir(parents=True, exist_ok=True)
    state = running_dev_stack(home)
    if state is None:
        with open(home / "dev.log", "ab") as log:  # the process has its own copy
            process = subprocess.Popen(
                [sys.executable, "-m", "noetl.cli", "dev", "serve", "--concurrency", str(concurrency),
                 "--api-port", str(port)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + wait_s
        while state is None:
            if process.poll() is not None:
                tail = (home / "dev.log").read_text(errors="replace")[-2000:]
                print(f"the dev stack did not start (exit {process.returncode}):\n{tail}", file=sys.stderr)
                raise typer.Exit(1)
            if time.monotonic() > deadline:
                process.terminate()
                print(f"the dev stack was not ready within {wait_s} s; see {home / 'dev.log'}",
                      file=sys.stderr)
                raise typer.Exit(1)
            time.sleep(0.1)
            state = running_dev_stack(home)
    else:
        _revive(home, state, wait_s)
    token = asyncio.run(_create_admin_token(state, "dev-up"))  # a fresh one each time: shown only here
    print(json.dumps({"status": "up", **state, "admin_token": token}, indent=2))


def stack_components(home: Path, state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What the serving process last wrote about its components, each checked against its pid now;
    with no serving process, the servers it leaves behind (a server whose pid is gone is `down`)."""
    try:
        report = json.loads(components_file(home).read_text())
    except (OSError, ValueError):
        report = {}
    found: list[dict[str, Any]] = list(report.get("components") or []) if state is not None else []
    if state is None:
        found = [{"name": "serving", "pid": None, "status": "down", "restarts": 0,
                  "detail": "no `noetl dev serve` process runs for this home"}]
        with contextlib.suppress(OSError, ValueError, KeyError):
            nats = json.loads((home / "nats" / "server.json").read_text())
            found.append({"name": "nats", "pid": nats["pid"], "status": "up", "restarts": 0, "detail": None})
        with contextlib.suppress(OSError, ValueError, IndexError):
            pg_pid = int((home / "postgres" / "postmaster.pid").read_text().split()[0])
            found.append({"name": "postgres", "pid": pg_pid, "status": "up", "restarts": 0, "detail": None})
    for component in found:
        pid = component.get("pid")
        if component.get("status") == "up" and (not pid or not pid_alive(int(pid))):
            component["status"] = "down"
    return found


def _revive(home: Path, state: dict[str, Any], wait_s: float) -> None:
    """A running stack with a component down or given up on: the serving process tries again now."""
    def unhealthy() -> list[str]:
        return [c["name"] for c in stack_components(home, state)
                if c.get("status") not in ("up", "standby", "off")]

    if not unhealthy():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(state["pid"]), signal.SIGUSR1)
    deadline = time.monotonic() + wait_s
    while (down := unhealthy()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if down:
        print(f"the dev stack runs, but {', '.join(down)} did not come back within {wait_s:.0f} s; see "
              f"{home / 'dev.log'}", file=sys.stderr)
        raise typer.Exit(1)


@dev_app.command("serve", hidden=True)
def dev_serve(
    concurrency: Annotated[int, typer.Option()] = 4,
    port: Annotated[int, typer.Option("--api-port")] = DEFAULT_API_PORT,
) -> None:
    """Run the dev stack in the foreground (what `dev up` starts in the background)."""
    eventloop.run(_serve({"workers": {"default": concurrency}, "worker_processes": True},
                         dev_state_file(), api=("127.0.0.1", port)))


@dev_app.command("down")
def dev_down(
    keep_data_servers: Annotated[bool, typer.Option(help="Leave NATS and Postgres running.")] = False,
) -> None:
    """Stop the local stack: the serving process, its worker processes, the embedded NATS and Postgres."""
    home = noetl_home()
    path = dev_state_file(home)
    with contextlib.suppress(OSError, ValueError):
        pid = int(json.loads(path.read_text()).get("pid", 0))
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        path.unlink()
    # worker processes (and python interpreters) a killed serving process left: they also stop by themselves
    stopped = home_processes.stop(home_processes.find(home, worker_processes.MODULE))
    home_processes.stop(home_processes.find(home, "engine.tools.python_runner", orphaned=True), groups=True)
    if not keep_data_servers:
        config = stack_config()
        if config.nats_url is None:
            stop_nats(home)
        if config.pg_dsn is None:
            stop_postgres(home)
    print(json.dumps({"status": "down", "home": str(home),
                      **({"stopped_workers": stopped} if stopped else {})}))


@dev_app.command("status")
def dev_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether the local stack runs, where, and each component (nats, postgres, orchestrator, API, each
    worker pool) with its pid and state; exit 0 when everything is up, 1 when the stack is down, 3 when
    it runs with a component down."""
    home = noetl_home()
    state = running_dev_stack(home)
    components = stack_components(home, state)
    degraded = state is not None and any(c.get("status") not in ("up", "standby", "off") for c in components)
    status = "down" if state is None else "degraded" if degraded else "up"
    out = {"status": status, **(state or {"home": str(home)}), "components": components}
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        print(" ".join(f"{k}={v}" for k, v in out.items() if k != "components"))
        for c in components:
            extra = f" restarts={c['restarts']}" if c.get("restarts") else ""
            detail = f"  ({c['detail']})" if c.get("detail") else ""
            print(f"  {c['name']:<16} {c.get('status', '?'):<10} pid={c.get('pid')}{extra}{detail}")
    raise typer.Exit(1 if state is None else 3 if degraded else 0)


@server_app.command("start")
def server_start(
    host: Annotated[str, typer.Option(help="The address the REST API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The REST API's port (0 = a free port).")]
    = DEFAULT_API_PORT,
    indexer: Annotated[bool, typer.Option(
        "--indexer/--no-indexer", help="Embed ended executions in this process (similar failures in the "
                                       "API and in diagnoses); else run `noetl indexer start`.")] = True,
    agent: Annotated[bool, typer.Option(
        "--agent/--no-agent", help="Run the proposals agent in this process (new failures -> guarded "
                                   "proposals awaiting approval -> measured); else `noetl proposals watch`.")]
    = True,
) -> None:
    """Run the orchestrator and the REST API (docs/api.md) against NOETL_NATS_URL / NOETL_PG_DSN
    (embedded ones when unset)."""
    eventloop.run(_serve({"workers": {}}, None, api=(host, port), indexer=indexer, agent=agent))


@worker_app.command("start")
def worker_start(
    pool: Annotated[str, typer.Option(help="The worker pool to serve.")] = "default",
    concurrency: Annotated[int, typer.Option(help="Steps run at once.")] = 4,
    labels: Annotated[str, typer.Option(help="Hardware labels this worker has, e.g. gpu,h100 (added to "
                                             "the pool's labels in the pools file).")] = "",
    capacity: Annotated[str, typer.Option(help="What this worker adds to its pool, e.g. cpu=8,gpu=1 "
                                               "(default: the pool's capacity in the pools file, else "
                                               "cpu=CONCURRENCY).")] = "",
) -> None:
    """Run a worker pool against NOETL_NATS_URL / NOETL_PG_DSN (embedded ones when unset)."""
    from engine.plan.pools import parse_capacity_overrides

    overrides: dict[str, Any] = {"orchestrator": False, "workers": {pool: concurrency},
                                 "worker_labels": tuple(x.strip() for x in labels.split(",") if x.strip())}
    if capacity.strip():
        try:
            units = parse_capacity_overrides(capacity)
            overrides["worker_capacity"] = {k: float(v) for k, v in units.items()}
        except ValueError as exc:
            print(f"--capacity: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    eventloop.run(_serve(overrides, None))


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
    app.add_typer(server_app, name="server")
    app.add_typer(worker_app, name="worker")
