"""`noetl register FILE` and `noetl catalog list|show`: the playbook catalog.

With NOETL_SERVER_URL set they go through the server's API, else straight to the store."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from control_plane.client import ClientError, NoetlClient
from control_plane.errors import NotFoundError
from control_plane.services.catalog import CatalogService, PlaybookInvalidError
from control_plane.store import Store, open_store
from control_plane.store.secret_key import load_secret_key
from engine.dsl.load import read_playbook_file
from engine.errors import PlaybookSourceError
from engine.runtime.embedded import start_postgres
from noetl import remote
from noetl.commands.stack import running_dev_stack
from noetl.settings import stack_config

catalog_app = typer.Typer(help="The playbook catalog: registered playbooks and their versions.",
                          no_args_is_help=True)


async def store_dsn() -> str:
    config = stack_config()
    dev = running_dev_stack()
    if config.pg_dsn:
        return config.pg_dsn
    if dev is not None:
        return str(dev["pg_dsn"])
    return (await asyncio.to_thread(start_postgres, config.home)).dsn


async def open_local_store() -> Store:
    """The store this machine's NoETL uses (NOETL_PG_DSN, the dev stack's, or the embedded one)."""
    config = stack_config()
    return await open_store(await store_dsn(), load_secret_key(config.home, config.secret_key))


async def _register(text: str, file: str) -> dict[str, object]:
    store = await open_local_store()
    try:
        registered = await CatalogService(store).register(text, file)
    finally:
        await store.close()
    return {"path": registered.path, "version": registered.version,
            "warnings": [w.format() for w in registered.warnings]}


def _register_remote(text: str, file: str) -> dict[str, Any]:
    def invalid(exc: ClientError) -> None:
        if exc.status == 422 and exc.errors:
            remote.print_located(exc.errors, file)
            raise typer.Exit(2)

    async def action(client: NoetlClient) -> dict[str, Any]:
        return await client.register(text)

    out = remote.call(action, on_error=invalid)
    out["warnings"] = [w if isinstance(w, str) else _located(w, file) for w in out.get("warnings") or []]
    return out


def _located(item: dict[str, Any], file: str) -> str:
    return (f"{file}:{item.get('line')}:{item.get('column')} {item.get('path') or '(document)'}: "
            f"warning: {item.get('message')}")


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
    if remote.active():
        out = _register_remote(text, str(file))
        for warning in out["warnings"]:
            print(warning, file=sys.stderr)
        print(json.dumps(out) if as_json else f"registered {out['path']} version {out['version']}")
        return
    try:
        out = asyncio.run(_register(text, str(file)))
    except PlaybookInvalidError as exc:
        for diag in exc.diagnostics:
            print(diag.format(), file=sys.stderr)
        raise typer.Exit(2) from None
    for warning in out["warnings"]:  # type: ignore[attr-defined]
        print(warning, file=sys.stderr)
    print(json.dumps(out) if as_json else f"registered {out['path']} version {out['version']}")


def _summary(item: Any) -> dict[str, Any]:
    return {"path": item.path, "version": item.version, "name": item.name, "description": item.description,
            "tags": item.tags, "labels": item.labels, "created_at": item.created_at.isoformat()}


async def _local(action: Any) -> Any:
    store = await open_local_store()
    try:
        return await action(CatalogService(store))
    finally:
        await store.close()


@catalog_app.command("list")
def catalog_list(
    prefix: Annotated[str | None, typer.Option(help="Only paths starting with this.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as a JSON list.")] = False,
) -> None:
    """The latest version of every registered playbook path."""
    if remote.active():
        async def fetch(client: NoetlClient) -> dict[str, Any]:
            return await client.catalog_list(prefix)

        items: list[dict[str, Any]] = remote.call(fetch).get("items") or []
    else:
        async def local(service: CatalogService) -> list[dict[str, Any]]:
            return [_summary(item) for item in await service.list(prefix)]

        items = asyncio.run(_local(local))
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        print(f"{item['path']}\tv{item['version']}\t{item.get('description') or ''}")


@catalog_app.command("show")
def catalog_show(
    path: Annotated[str, typer.Argument(help="The catalog path.", show_default=False)],
    version: Annotated[int | None, typer.Option(help="The version (default: the latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entry with its YAML as JSON.")] = False,
) -> None:
    """One registered version: its YAML as registered (exit 2 when it is not in the catalog)."""
    if remote.active():
        async def fetch(client: NoetlClient) -> dict[str, Any]:
            return await client.catalog_get(path, version)

        entry = remote.call(fetch)
    else:
        async def local(service: CatalogService) -> dict[str, Any]:
            found = await service.get(path, version)
            return {**_summary(found), "content": found.text}

        try:
            entry = asyncio.run(_local(local))
        except NotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(entry, indent=2, default=str))
    else:
        print(entry.get("content") or "", end="")


def register(app: typer.Typer) -> None:
    app.command("register")(register_playbook)
    app.add_typer(catalog_app, name="catalog")
