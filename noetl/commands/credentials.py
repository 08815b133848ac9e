"""`noetl credential set|list|delete`: encrypted credentials for `auth:` and keychains (never shown).

With NOETL_SERVER_URL set they go through the server's API (set and delete need an admin token)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from control_plane.client import NoetlClient
from control_plane.errors import ControlPlaneError
from control_plane.store import Store, open_store
from control_plane.store.secret_key import load_secret_key
from noetl import remote
from noetl.commands.catalog import store_dsn
from noetl.settings import stack_config

credential_app = typer.Typer(help="Encrypted credentials (values are never printed).", no_args_is_help=True)


async def _with_store(action: Any) -> Any:
    config = stack_config()
    store = await open_store(await store_dsn(), load_secret_key(config.home, config.secret_key))
    try:
        return await action(store)
    finally:
        await store.close()


def _run(action: Any) -> Any:
    try:
        return asyncio.run(_with_store(action))
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


def _parse_data(data: str) -> dict[str, Any]:
    text = Path(data[1:]).read_text(encoding="utf-8") if data.startswith("@") else data
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"--data is not valid JSON ({exc.msg} at character {exc.pos}); pass an object such as "
              '\'{"db_host": "localhost", "db_user": "app", ...}\' or @file.json', file=sys.stderr)
        raise typer.Exit(2) from None
    if not isinstance(value, dict):
        print("--data must be a JSON object of the credential's fields", file=sys.stderr)
        raise typer.Exit(2)
    return value


@credential_app.command("set")
def credential_set(
    name: Annotated[str, typer.Argument(help="The credential's name, as used in `auth:`.")],
    type_: Annotated[str, typer.Option("--type", help="postgres, http, bearer, oauth2, snowflake, ...")],
    data: Annotated[str, typer.Option(help="The fields as a JSON object, or @file.json.")],
    description: Annotated[str | None, typer.Option(help="What it is for (shown in lists).")] = None,
) -> None:
    """Create or replace a credential; its values are stored encrypted (AES-GCM)."""
    fields = _parse_data(data)
    if remote.active():
        async def put(client: NoetlClient) -> dict[str, Any]:
            return await client.credential_set(name, type_, fields, description)

        out = remote.call(put)
        print(f"credential {out['name']} ({out['type']}) stored")
        return
    info = _run(lambda store: store.credentials.set(name, type_, fields, description))
    print(f"credential {info.name} ({info.type}) stored")


@credential_app.command("list")
def credential_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Names, types and descriptions; never values."""
    async def action(store: Store) -> Any:
        return await store.credentials.list()

    if remote.active():
        async def fetch(client: NoetlClient) -> dict[str, Any]:
            return await client.credential_list()

        rows = [{"name": i["name"], "type": i["type"], "description": i.get("description"),
                 "updated_at": i.get("updated_at")} for i in remote.call(fetch).get("items") or []]
    else:
        rows = [{"name": i.name, "type": i.type, "description": i.description,
                 "updated_at": i.updated_at.isoformat()} for i in _run(action)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['name']}\t{row['type']}\t{row['description'] or ''}")


@credential_app.command("delete")
def credential_delete(name: str) -> None:
    """Delete a credential."""
    if remote.active():
        async def delete(client: NoetlClient) -> None:
            await client.credential_delete(name)

        remote.call(delete)
    else:
        _run(lambda store: store.credentials.delete(name))
    print(f"credential {name} deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(credential_app, name="credential")
