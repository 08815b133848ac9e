"""`noetl register FILE` and `noetl catalog list|show`: the playbook catalog.

With NOETL_SERVER_URL set they go through the server's API, else straight to the store (noetl.backend)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from noetl.backend import call

catalog_app = typer.Typer(help="The playbook catalog: registered playbooks and their versions.",
                          no_args_is_help=True)


def register_playbook(
    file: Annotated[Path, typer.Argument(help="The playbook file.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a playbook in the catalog (validated first). Exit 2 when it is invalid or unreadable."""
    from engine.dsl.load import read_playbook_file
    from engine.errors import PlaybookSourceError

    try:
        text = read_playbook_file(file)
    except PlaybookSourceError as exc:
        print(f"{file}: error: {exc.message}", file=sys.stderr)
        raise typer.Exit(2) from None
    out = call(lambda backend: backend.register(text, str(file)))
    for warning in out["warnings"]:
        print(warning, file=sys.stderr)
    if as_json:
        print(json.dumps(out))
        return
    print(f"registered {out['path']} version {out['version']}")
    for trigger in out.get("triggers") or []:
        print(f"  trigger {trigger['name']} ({trigger['kind']}): {trigger['id']}")
        if trigger.get("secret"):
            print(f"    webhook {trigger['webhook_path']}; its secret, shown only now: {trigger['secret']}")


@catalog_app.command("list")
def catalog_list(
    prefix: Annotated[str | None, typer.Option(help="Only paths starting with this.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as a JSON list.")] = False,
) -> None:
    """The latest version of every registered playbook path."""
    items = call(lambda backend: backend.catalog_list(prefix))
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
    entry: dict[str, Any] = call(lambda backend: backend.catalog_get(path, version))
    if as_json:
        print(json.dumps(entry, indent=2, default=str))
    else:
        print(entry.get("content") or "", end="")


def register(app: typer.Typer) -> None:
    app.command("register")(register_playbook)
    app.add_typer(catalog_app, name="catalog")
