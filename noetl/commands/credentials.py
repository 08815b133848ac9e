"""`noetl credential set|list|delete`: encrypted credentials for `auth:` and keychains (never shown).

With NOETL_SERVER_URL set they go through the server's API (set and delete need an admin token); else
straight to the store (noetl.backend)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from noetl.backend import call

credential_app = typer.Typer(help="Encrypted credentials (values are never printed).", no_args_is_help=True)


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
    out = call(lambda backend: backend.credential_set(name, type_, fields, description))
    print(f"credential {out['name']} ({out['type']}) stored")


@credential_app.command("list")
def credential_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Names, types and descriptions; never values."""
    rows = call(lambda backend: backend.credential_list())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['name']}\t{row['type']}\t{row['description'] or ''}")


@credential_app.command("delete")
def credential_delete(name: str) -> None:
    """Delete a credential."""
    call(lambda backend: backend.credential_delete(name))
    print(f"credential {name} deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(credential_app, name="credential")
