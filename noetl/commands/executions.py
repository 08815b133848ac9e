"""`noetl execute playbook PATH`, `noetl status ID`, `noetl events ID`, `noetl cancel ID`: executions.

With NOETL_SERVER_URL set they go through the server's API; else they read the event log and talk to
the bus of this machine's NoETL (the dev stack's, NOETL_NATS_URL / NOETL_PG_DSN, or the embedded one).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from control_plane.client import NoetlClient
from control_plane.errors import ConflictError, InvalidArgumentError, NotFoundError
from control_plane.services.executions import ExecutionService
from control_plane.stack import Stack, resolve_ref
from control_plane.store import Store, open_store
from control_plane.store.secret_key import load_secret_key
from engine.protocol.events import Event
from engine.protocol.ids import new_execution_id
from engine.runtime.summary import summarize
from noetl import remote
from noetl.commands.catalog import store_dsn
from noetl.commands.run import parse_payload
from noetl.commands.stack import running_dev_stack
from noetl.follow import ENDED, EXIT_RUNNING, follow_local, follow_remote, report_timeout
from noetl.outage import Rider
from noetl.progress import Progress
from noetl.session import Session
from noetl.settings import outage_wait_s, stack_config

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID = 0, 1, 2  # 3: unreachable (noetl.cli), 4: EXIT_RUNNING
READ_CONNECT_S = 3.0  # how long a read waits for Postgres before it counts as an outage

execute_app = typer.Typer(help="Start an execution of a registered playbook (NoETL's `execute`).",
                          no_args_is_help=True)


# ---------------------------------------------------------------------- reading an execution
async def _read(execution_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = stack_config()
    dsn = await store_dsn()
    store = await open_store(dsn, load_secret_key(config.home, config.secret_key),
                             connect_timeout_s=READ_CONNECT_S)
    try:
        execution = await store.executions.get(execution_id)
        events = await store.events.events(execution_id)
    finally:
        await store.close()
    summary = summarize(execution_id, events, resolve_ref)
    if summary["status"] not in ENDED:  # pending (not picked up yet) or running: as the row says
        summary["status"] = execution.status
    return summary, [e.model_dump(mode="json") for e in events]


def _load(execution_id: str, rider: Rider) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        return asyncio.run(rider(lambda: _read(execution_id)))
    except NotFoundError:
        print(f"no execution '{execution_id}' in this NoETL's event log", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from None


def _status_exit(status: str) -> int:
    return {"completed": EXIT_COMPLETED, "running": EXIT_RUNNING, "pending": EXIT_RUNNING}.get(status,
                                                                                              EXIT_FAILED)


def status(execution_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """An execution's status and its steps. Exit 0 completed, 1 failed/cancelled, 3 unreachable for
    longer than NOETL_OUTAGE_WAIT_S, 4 pending or running."""
    rider = Rider(outage_wait_s())
    if remote.active():
        async def fetch(client: NoetlClient) -> dict[str, Any]:
            return await rider(lambda: client.execution(execution_id))

        summary = remote.call(fetch)
    else:
        summary, _ = _load(execution_id, rider)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"execution {execution_id}: {summary['status']}")
        for name, step in (summary.get("steps") or {}).items():
            line = f"  {name}: {step.get('status')}"
            if (step.get("attempts") or 0) > 1:
                line += f" ({step['attempts']} attempts)"
            if step.get("error"):
                line += f" - {step['error'].get('kind')}: {step['error'].get('message')}"
            print(line)
    raise typer.Exit(_status_exit(str(summary["status"])))


def events(execution_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every event of an execution, in order."""
    rider = Rider(outage_wait_s())
    if remote.active():
        async def fetch(client: NoetlClient) -> list[dict[str, Any]]:
            return await rider(lambda: client.all_events(execution_id))

        items = remote.call(fetch)
    else:
        _, items = _load(execution_id, rider)
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        where = item.get("step") or ""
        if item.get("loop_index") is not None:
            where += f"[{item['loop_index']}]"
        print(f"{item['seq']:>5} {item['timestamp']} {item['type']:<22} {where}")


# ---------------------------------------------------------------------- cancelling
async def _cancel_local(execution_id: str) -> None:
    dev = running_dev_stack()
    overrides: dict[str, Any] = {"orchestrator": False, "workers": {}}
    if dev is not None:
        overrides |= {"nats_url": dev["nats_url"], "pg_dsn": dev["pg_dsn"]}
    async with Stack(stack_config(**overrides)) as stack:
        assert stack.executions is not None
        await stack.executions.cancel(execution_id)


def cancel(execution_id: str) -> None:
    """Cancel a running execution and its children (exit 2 when it is unknown or already ended)."""
    if remote.active():
        async def post(client: NoetlClient) -> dict[str, Any]:
            return await client.cancel(execution_id)

        remote.call(post)
    else:
        try:
            asyncio.run(_cancel_local(execution_id))
        except (NotFoundError, ConflictError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(EXIT_INVALID) from None
    print(f"execution {execution_id} cancelling")


# ---------------------------------------------------------------------- executing
@execute_app.command("playbook")
def execute_playbook(
    path: Annotated[str, typer.Argument(help="The playbook's catalog path.", show_default=False)],
    version: Annotated[int | None, typer.Option(help="The version (default: the latest).")] = None,
    payload: Annotated[str | None, typer.Option(help="A JSON object deep-merged into the workload.")] = None,
    merge: Annotated[bool, typer.Option(
        "--merge", help="Deep-merge the payload into the workload (the default; NoETL's flag).")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the execution to its end.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    timeout: Annotated[float | None, typer.Option(help="With --wait: give up after N seconds.")] = None,
) -> None:
    """Start an execution of a registered playbook. With --wait: exit 0 completed, 1 failed or cancelled
    (4 when it is still running after --timeout); without: print its id at once. Exit 3 when Postgres,
    NATS or the API server is unreachable for longer than NOETL_OUTAGE_WAIT_S."""
    data = parse_payload(payload) if payload else None
    rider = Rider(outage_wait_s())
    if remote.active():
        started, summary = remote.call(lambda client: _execute_remote(
            client, rider, path, version, data, merge, wait, as_json, timeout))
    else:
        try:
            started, summary = asyncio.run(_execute_local(rider, path, version, data, wait, as_json, timeout))
        except (NotFoundError, InvalidArgumentError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(EXIT_INVALID) from None
    if summary is None:
        print(json.dumps(started, indent=2, default=str) if as_json
              else f"execution {started['execution_id']} started ({started['path']} version "
                   f"{started['version']})")
        return
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    if summary.get("status") not in ENDED:
        report_timeout(str(started["execution_id"]), timeout, str(summary.get("status")))
        raise typer.Exit(EXIT_RUNNING)
    raise typer.Exit(EXIT_COMPLETED if summary["status"] == "completed" else EXIT_FAILED)


def _as_event(item: dict[str, Any]) -> Event | None:
    try:
        return Event.model_validate(item)
    except ValidationError:
        return None


async def _execute_remote(client: NoetlClient, rider: Rider, path: str, version: int | None,
                          payload: dict[str, Any] | None, merge: bool, wait: bool, as_json: bool,
                          timeout: float | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    # started again only when the server surely never saw it: the API makes a new execution each time
    started = await rider(lambda: client.execute(path, version, payload, merge=True if merge else None),
                          repeatable=False)
    if not wait:
        return started, None
    execution_id = str(started["execution_id"])
    progress = Progress(execution_id, quiet=as_json)

    def on_item(item: dict[str, Any]) -> None:
        event = _as_event(item)
        if event is not None:
            progress.update(event)

    with progress:
        summary = await follow_remote(client, rider, execution_id, timeout, on_item)
    if summary.get("status") in ENDED:
        progress.finish(summary)
    return started, summary


async def _execute_local(rider: Rider, path: str, version: int | None, payload: dict[str, Any] | None,
                         wait: bool, as_json: bool, timeout: float | None
                         ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    dev = running_dev_stack()
    overrides: dict[str, Any] = {}
    if dev is not None:
        overrides = {"nats_url": dev["nats_url"], "pg_dsn": dev["pg_dsn"]}
    submit_only = dev is not None or not wait  # someone else runs it: only submit (and follow)
    if submit_only:
        overrides |= {"orchestrator": False, "workers": {}}
    config = stack_config(**overrides)
    session = Session(config, reopen=submit_only)
    try:
        entry = await rider(lambda: session.call(lambda stack: _store(stack).catalog.get(path, version)))
        execution_id = new_execution_id()  # chosen here, so that starting again after an outage is safe
        await rider(lambda: session.call(lambda stack: _services(stack).start(
            entry.path, version=entry.version, payload=payload, execution_id=execution_id)))
        row = await rider(lambda: session.call(lambda stack: _store(stack).executions.get(execution_id)))
        started = {"execution_id": execution_id, "path": entry.path, "version": entry.version,
                   "status": row.status}
        if not wait:
            if dev is None and not config.nats_url:
                print("no `noetl dev up` is running: the execution runs once an orchestrator and a worker "
                      "pool do (noetl dev up, or noetl server start + noetl worker start)", file=sys.stderr)
            return started, None
        progress = Progress(execution_id, quiet=as_json)
        with progress:
            summary = await follow_local(session, rider, execution_id, timeout, progress.update)
        if summary["status"] in ENDED:
            progress.finish(summary)
        return started, summary
    finally:
        await session.close()


def _store(stack: Stack) -> Store:
    assert stack.store is not None
    return stack.store


def _services(stack: Stack) -> ExecutionService:
    assert stack.executions is not None
    return stack.executions


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(events)
    app.command()(cancel)
    app.add_typer(execute_app, name="execute")
