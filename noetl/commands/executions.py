"""`noetl status ID` and `noetl events ID`: an execution read from the event log."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from control_plane.errors import NotFoundError
from control_plane.stack import resolve_ref
from control_plane.store import open_store
from control_plane.store.secret_key import load_secret_key
from engine.runtime.summary import summarize
from noetl.commands.catalog import store_dsn
from noetl.settings import stack_config


async def _read(execution_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = stack_config()
    dsn = await store_dsn()
    store = await open_store(dsn, load_secret_key(config.home, config.secret_key))
    try:
        await store.executions.get(execution_id)
        events = await store.events.events(execution_id)
    finally:
        await store.close()
    return summarize(execution_id, events, resolve_ref), [e.model_dump(mode="json") for e in events]


def _load(execution_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        return asyncio.run(_read(execution_id))
    except NotFoundError:
        print(f"no execution '{execution_id}' in this NoETL's event log", file=sys.stderr)
        raise typer.Exit(2) from None


def status(execution_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """An execution's status and its steps. Exit 0 completed, 1 failed/cancelled, 3 still running."""
    summary, _ = _load(execution_id)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"execution {execution_id}: {summary['status']}")
        for name, step in summary["steps"].items():
            line = f"  {name}: {step['status']}"
            if step.get("attempts", 0) > 1:
                line += f" ({step['attempts']} attempts)"
            if step.get("error"):
                line += f" - {step['error'].get('kind')}: {step['error'].get('message')}"
            print(line)
    raise typer.Exit({"completed": 0, "running": 3}.get(summary["status"], 1))


def events(execution_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every event of an execution, in order."""
    _, items = _load(execution_id)
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        where = item.get("step") or ""
        if item.get("loop_index") is not None:
            where += f"[{item['loop_index']}]"
        print(f"{item['seq']:>5} {item['timestamp']} {item['type']:<22} {where}")


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(events)
