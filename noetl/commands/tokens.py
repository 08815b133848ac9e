"""`noetl token create|list|revoke`: API tokens (docs/api.md, Auth).

With NOETL_SERVER_URL set (and an admin NOETL_TOKEN) they go through the API. Without it they work on
this machine's store directly: that is how the first token is made (bootstrap on the server's machine,
with access to its data dir). A token is printed once, when it is created; only its hash is stored.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from control_plane.roles import ROLES
from noetl.backend import call

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)} (each includes the ones before).")],
    name: Annotated[str, typer.Option(help="Who or what uses it, e.g. ci or alice.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the token and its info as JSON.")] = False,
) -> None:
    """Create a token and print it (the only time it is shown)."""
    if role not in ROLES:
        print(f"error: unknown role '{role}' (one of {', '.join(ROLES)})", file=sys.stderr)
        raise typer.Exit(2)
    out = call(lambda backend: backend.token_create(name, role))
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    print(f"token {out['id']} ({out['role']}, {out['name']}); it is shown only now:", file=sys.stderr)
    print(out["token"])


@token_app.command("list")
def token_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Live tokens (never the tokens themselves)."""
    items = call(lambda backend: backend.token_list())
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        used = item.get("last_used_at") or "never"
        print(f"{item['id']}\t{item['role']}\t{item['name']}\tlast used {used}")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (noetl token list).")]) -> None:
    """Revoke a token: it stops working at once."""
    call(lambda backend: backend.token_revoke(token_id))
    print(f"token {token_id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
