"""`noetl register FILE`: validate a playbook and store it as the next version of its catalog path."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from control_plane.services.catalog import CatalogService, PlaybookInvalidError
from control_plane.store import open_store
from control_plane.store.secret_key import load_secret_key
from engine.dsl.load import read_playbook_file
from engine.errors import PlaybookSourceError
from engine.runtime.embedded import start_postgres
from noetl.commands.stack import running_dev_stack
from noetl.settings import stack_config


async def store_dsn() -> str:
    config = stack_config()
    dev = running_dev_stack()
    if config.pg_dsn:
        return config.pg_dsn
    if dev is not None:
        return str(dev["pg_dsn"])
    return (await asyncio.to_thread(start_postgres, config.home)).dsn


async def _register(text: str, file: str) -> dict[str, object]:
    config = stack_config()
    store = await open_store(await store_dsn(), load_secret_key(config.home, config.secret_key))
    try:
        registered = await CatalogService(store).register(text, file)
    finally:
        await store.close()
    return {"path": registered.path, "version": registered.version,
            "warnings": [w.format() for w in registered.warnings]}


def register_playbook(
    file: Annotated[Path, typer.Argument(help="The playbook file.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a playbook in the catalog (validated first). Exit 2 when it is invalid or unreadable."""
    try:
        text = read_playbook_file(file)
    except PlaybookSourceError as exc:
        print(f"{file}: error: {exc.message}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        out = asyncio.run(_register(text, str(file)))
    except PlaybookInvalidError as exc:
        for diag in exc.diagnostics:
            print(diag.format(), file=sys.stderr)
        raise typer.Exit(2) from None
    for warning in out["warnings"]:  # type: ignore[attr-defined]
        print(warning, file=sys.stderr)
    print(json.dumps(out) if as_json else f"registered {out['path']} version {out['version']}")


def register(app: typer.Typer) -> None:
    app.command("register")(register_playbook)
