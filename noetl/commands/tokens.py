"""`noetl token create|list|revoke`: API tokens (docs/api.md, Auth).

With NOETL_SERVER_URL set (and an admin NOETL_TOKEN) they go through the API. Without it they work on
this machine's store directly: that is how the first token is made (bootstrap on the server's machine,
with access to its data dir). A token is printed once, when it is created; only its hash is stored.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from control_plane.client import NoetlClient
from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.services.auth import ROLES, AuthService, TokenInfo
from noetl import remote
from noetl.commands.catalog import open_local_store

token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)


def _info(info: TokenInfo) -> dict[str, Any]:
    return {"id": info.token_id, "name": info.name, "role": info.role,
            "created_at": info.created_at.isoformat(),
            "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None}


async def _local(action: Any) -> Any:
    store = await open_local_store()
    try:
        return await action(AuthService(store))
    finally:
        await store.close()


def _run_local(action: Any) -> Any:
    try:
        return asyncio.run(_local(action))
    except (InvalidArgumentError, NotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


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
    if remote.active():
        async def post(client: NoetlClient) -> dict[str, Any]:
            return await client.token_create(name, role)

        out = remote.call(post)
    else:
        async def create(auth: AuthService) -> dict[str, Any]:
            info, token = await auth.create_token(name, role)
            return {**_info(info), "token": token}

        out = _run_local(create)
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    print(f"token {out['id']} ({out['role']}, {out['name']}); it is shown only now:", file=sys.stderr)
    print(out["token"])


@token_app.command("list")
def token_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Live tokens (never the tokens themselves)."""
    if remote.active():
        async def fetch(client: NoetlClient) -> dict[str, Any]:
            return await client.token_list()

        items: list[dict[str, Any]] = remote.call(fetch).get("items") or []
    else:
        async def listed(auth: AuthService) -> list[dict[str, Any]]:
            return [_info(info) for info in await auth.tokens()]

        items = _run_local(listed)
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for item in items:
        used = item.get("last_used_at") or "never"
        print(f"{item['id']}\t{item['role']}\t{item['name']}\tlast used {used}")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (noetl token list).")]) -> None:
    """Revoke a token: it stops working at once."""
    if remote.active():
        async def delete(client: NoetlClient) -> None:
            await client.token_revoke(token_id)

        remote.call(delete)
    else:
        async def revoke(auth: AuthService) -> None:
            await auth.revoke(token_id)

        _run_local(revoke)
    print(f"token {token_id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
