"""`noetl execute playbook PATH`, `noetl status ID`, `noetl events ID`, `noetl cancel ID`: executions.

With NOETL_SERVER_URL set they go through the server's API; else they read the event log and talk to
the bus of this machine's NoETL (the dev stack's, NOETL_NATS_URL / NOETL_PG_DSN, or the embedded one):
noetl.backend chooses.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from noetl.backend import call
from noetl.payload import parse_payload
from noetl.settings import outage_wait_s

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID = 0, 1, 2  # 3: unreachable (noetl.cli), 4: EXIT_RUNNING

execute_app = typer.Typer(help="Start an execution of a registered playbook (NoETL's `execute`).",
                          no_args_is_help=True)


# ---------------------------------------------------------------------- reading an execution
def _status_exit(status: str) -> int:
    from noetl.follow import EXIT_RUNNING

    return {"completed": EXIT_COMPLETED, "running": EXIT_RUNNING, "pending": EXIT_RUNNING}.get(status,
                                                                                              EXIT_FAILED)


def status(execution_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """An execution's status and its steps. Exit 0 completed, 1 failed/cancelled, 3 unreachable for
    longer than NOETL_OUTAGE_WAIT_S, 4 pending or running."""
    from noetl.outage import Rider

    rider = Rider(outage_wait_s())
    summary = call(lambda backend: backend.execution(execution_id, rider))
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
    from noetl.outage import Rider

    rider = Rider(outage_wait_s())
    items = call(lambda backend: backend.events(execution_id, rider))
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        where = item.get("step") or ""
        if item.get("loop_index") is not None:
            where += f"[{item['loop_index']}]"
        print(f"{item['seq']:>5} {item['timestamp']} {item['type']:<22} {where}")


# ---------------------------------------------------------------------- cancelling
def cancel(execution_id: str) -> None:
    """Cancel a running execution and its children (exit 2 when it is unknown or already ended)."""
    call(lambda backend: backend.cancel(execution_id))
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
    from noetl.follow import ENDED, EXIT_RUNNING, report_timeout
    from noetl.outage import Rider

    data = parse_payload(payload) if payload else None
    rider = Rider(outage_wait_s())
    started, summary = call(lambda backend: backend.execute(
        path, version, data, merge=merge, wait=wait, quiet=as_json, timeout=timeout, rider=rider))
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


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(events)
    app.command()(cancel)
    app.add_typer(execute_app, name="execute")
