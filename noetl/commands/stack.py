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

from control_plane.stack import Stack
from engine.runtime.embedded import pid_alive, start_nats, start_postgres
from noetl.settings import noetl_home, stack_config

dev_app = typer.Typer(help="A local NoETL (NATS, Postgres, orchestrator, a worker pool) in the background.",
                      no_args_is_help=True)
server_app = typer.Typer(help="The orchestrator as a long-running process.", no_args_is_help=True)
worker_app = typer.Typer(help="A worker pool as a long-running process.", no_args_is_help=True)


def dev_state_file(home: Path | None = None) -> Path:
    return (home or noetl_home()) / "dev.json"


def running_dev_stack(home: Path | None = None) -> dict[str, Any] | None:
    """The dev stack's state when its serving process is alive, else None."""
    path = dev_state_file(home)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("ready") and pid_alive(int(state.get("pid", 0))) else None


async def _serve(config_overrides: dict[str, Any], state_file: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Stack(stack_config(**config_overrides)) as stack:
        if state_file is not None:
            state_file.write_text(json.dumps({"pid": os.getpid(), "ready": True, "nats_url": stack.nats_url,
                                              "pg_dsn": stack.pg_dsn, "home": str(stack.config.home)}))
        print(f"serving: nats {stack.nats_url}", file=sys.stderr, flush=True)
        await stop.wait()
    if state_file is not None:
        with contextlib.suppress(OSError):
            state_file.unlink()


@dev_app.command("up")
def dev_up(
    concurrency: Annotated[int, typer.Option(help="Concurrent steps of the default worker pool.")] = 4,
    wait_s: Annotated[float, typer.Option(help="How long to wait for the stack to be ready.")] = 60.0,
) -> None:
    """Start the local stack in the background (or report the one already running)."""
    home = noetl_home()
    home.mkdir(parents=True, exist_ok=True)
    state = running_dev_stack(home)
    if state is None:
        log = open(home / "dev.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "noetl.cli", "dev", "serve", "--concurrency", str(concurrency)],
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
    print(json.dumps({"status": "up", **state}, indent=2))


@dev_app.command("serve", hidden=True)
def dev_serve(concurrency: Annotated[int, typer.Option()] = 4) -> None:
    """Run the dev stack in the foreground (what `dev up` starts in the background)."""
    asyncio.run(_serve({"workers": {"default": concurrency}, "worker_processes": True},
                       dev_state_file()))


@dev_app.command("down")
def dev_down(
    keep_data_servers: Annotated[bool, typer.Option(help="Leave NATS and Postgres running.")] = False,
) -> None:
    """Stop the local stack: the serving process, then the embedded NATS and Postgres."""
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
    if not keep_data_servers:
        config = stack_config()
        if config.nats_url is None and (home / "nats").exists():
            start_nats(home).stop()
        if config.pg_dsn is None and (home / "postgres").exists():
            start_postgres(home).stop()
    print(json.dumps({"status": "down", "home": str(home)}))


@dev_app.command("status")
def dev_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Whether the local stack runs, and where."""
    state = running_dev_stack()
    out = {"status": "up", **state} if state else {"status": "down", "home": str(noetl_home())}
    print(json.dumps(out, indent=2) if as_json else " ".join(f"{k}={v}" for k, v in out.items()))
    raise typer.Exit(0 if state else 1)


@server_app.command("start")
def server_start() -> None:
    """Run the orchestrator against NOETL_NATS_URL / NOETL_PG_DSN (embedded ones when unset)."""
    asyncio.run(_serve({"workers": {}}, None))


@worker_app.command("start")
def worker_start(
    pool: Annotated[str, typer.Option(help="The worker pool to serve.")] = "default",
    concurrency: Annotated[int, typer.Option(help="Steps run at once.")] = 4,
) -> None:
    """Run a worker pool against NOETL_NATS_URL / NOETL_PG_DSN (embedded ones when unset)."""
    asyncio.run(_serve({"orchestrator": False, "workers": {pool: concurrency}}, None))


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
    app.add_typer(server_app, name="server")
    app.add_typer(worker_app, name="worker")
