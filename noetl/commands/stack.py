"""`noetl dev up|down|status`, `noetl server start`, `noetl worker start`: the runtime's processes."""

from __future__ import annotations

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

from noetl.devstack import components_file, dev_state_file, running_dev_stack
from noetl.settings import DEFAULT_API_PORT, api_port, noetl_home, stack_config

IndexerOption = Annotated[bool, typer.Option(
    "--indexer/--no-indexer", help="Embed ended executions in the serving process (similar failures in the "
                                   "API and in diagnoses); else run `noetl indexer start`.")]
AgentOption = Annotated[bool, typer.Option(
    "--agent/--no-agent", help="Run the proposals agent in the serving process (new failures -> guarded "
                               "proposals awaiting approval -> measured); else `noetl proposals watch`.")]
ExporterOption = Annotated[bool, typer.Option(
    "--exporter/--no-exporter", help="Export the event log to ClickHouse (NOETL_CLICKHOUSE_URL) and/or "
                                     "Parquet (NOETL_EXPORT_DIR) in the serving process when either is "
                                     "set; else `noetl export run`.")]

dev_app = typer.Typer(help="A local NoETL (NATS, Postgres, orchestrator, a worker pool) in the background.",
                      no_args_is_help=True)
server_app = typer.Typer(help="The orchestrator and the REST API as a long-running process.",
                         no_args_is_help=True)
worker_app = typer.Typer(help="A worker pool as a long-running process.", no_args_is_help=True)


async def _create_admin_token(state: dict[str, Any], name: str) -> str:
    """A fresh admin token for the dev stack's user (only its hash is stored)."""
    from control_plane.services.auth import AuthService
    from control_plane.store import open_store
    from control_plane.store.secret_key import load_secret_key

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
    indexer: IndexerOption = True,
    agent: AgentOption = True,
    exporter: ExporterOption = True,
) -> None:
    """Start the local stack and its REST API in the background (or report the one already running);
    prints where they are and a fresh admin token for the API (shown only here). It runs what
    `noetl server start` runs (the indexer and the proposals agent included) plus a worker pool.
    Its NATS and Postgres stay up until `noetl dev down` (NOETL_IDLE_STOP does not apply)."""
    import asyncio

    home = noetl_home()
    port = api_port() if port is None else port
    home.mkdir(parents=True, exist_ok=True)
    state = running_dev_stack(home)
    if state is None:
        with open(home / "dev.log", "ab") as log:  # the process has its own copy
            process = subprocess.Popen(
                [sys.executable, "-m", "noetl.cli", "dev", "serve", "--concurrency", str(concurrency),
                 "--api-port", str(port), "--indexer" if indexer else "--no-indexer",
                 "--agent" if agent else "--no-agent", "--exporter" if exporter else "--no-exporter"],
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
    from engine.runtime.embedded import pid_alive

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
def devserve(
    concurrency: Annotated[int, typer.Option()] = 4,
    port: Annotated[int, typer.Option("--api-port")] = DEFAULT_API_PORT,
    indexer: Annotated[bool, typer.Option("--indexer/--no-indexer")] = True,
    agent: Annotated[bool, typer.Option("--agent/--no-agent")] = True,
    exporter: Annotated[bool, typer.Option("--exporter/--no-exporter")] = True,
) -> None:
    """Run the dev stack in the foreground (what `dev up` starts in the background)."""
    from engine.runtime import eventloop
    from noetl.serving import serve

    eventloop.run(serve({"workers": {"default": concurrency}, "worker_processes": True},
                         dev_state_file(), api=("127.0.0.1", port), indexer=indexer, agent=agent,
                         exporter=exporter))


@dev_app.command("down")
def dev_down(
    keep_data_servers: Annotated[bool, typer.Option(help="Leave NATS and Postgres running.")] = False,
) -> None:
    """Stop the local stack: the serving process, its worker processes, the embedded NATS and Postgres."""
    from control_plane import home_processes
    from control_plane import worker_process as worker_processes
    from engine.runtime.embedded import pid_alive, stop_nats, stop_postgres

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
    indexer: IndexerOption = True,
    agent: AgentOption = True,
    exporter: ExporterOption = True,
) -> None:
    """Run the orchestrator and the REST API (docs/api.md) against NOETL_NATS_URL / NOETL_PG_DSN
    (embedded ones when unset)."""
    from engine.runtime import eventloop
    from noetl.serving import serve

    eventloop.run(serve({"workers": {}}, None, api=(host, port), indexer=indexer, agent=agent,
                        exporter=exporter))


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
    from engine.runtime import eventloop
    from noetl.serving import serve

    overrides: dict[str, Any] = {"orchestrator": False, "workers": {pool: concurrency},
                                 "worker_labels": tuple(x.strip() for x in labels.split(",") if x.strip())}
    if capacity.strip():
        try:
            units = parse_capacity_overrides(capacity)
            overrides["worker_capacity"] = {k: float(v) for k, v in units.items()}
        except ValueError as exc:
            print(f"--capacity: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    eventloop.run(serve(overrides, None))


def register(app: typer.Typer) -> None:
    from noetl.commands import cluster

    cluster.register(dev_app)
    app.add_typer(dev_app, name="dev")
    app.add_typer(server_app, name="server")
    app.add_typer(worker_app, name="worker")
