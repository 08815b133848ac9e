"""Client mode: with NOETL_SERVER_URL set, commands go through the server's API (control_plane.client).

`active()` says whether the CLI is in client mode; `call(action)` runs `action(client)` and turns the
server's refusals into one line on stderr and the CLI's exit codes (docs/runtime.md):
2 a request the server refused as invalid (4xx: unknown id, invalid playbook, conflict),
3 the server unreachable, or the token missing, unknown or too weak (401, 403), or the server unable (5xx).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from control_plane.client import ClientError, NoetlClient
from noetl.settings import api_token, server_url

T = TypeVar("T")

EXIT_INVALID, EXIT_UNAVAILABLE = 2, 3


def active() -> bool:
    """Whether NOETL_SERVER_URL is set (the CLI is a client of that server)."""
    return server_url() is not None


def exit_code(error: ClientError) -> int:
    if error.status in (401, 403) or error.status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_INVALID


def report(error: ClientError) -> None:
    print(f"error: {error}", file=sys.stderr)


def print_located(errors: list[dict[str, Any]], file: str) -> None:
    """A playbook's located errors as `noetl validate` prints them: FILE:LINE:COL PATH: MESSAGE."""
    for item in errors:
        if "line" in item:
            print(f"{file}:{item.get('line')}:{item.get('column')} {item.get('path') or '(document)'}: "
                  f"{item.get('message')}", file=sys.stderr)
        else:  # a malformed request: {loc, msg, type}
            loc = ".".join(str(part) for part in item.get("loc") or [])
            print(f"{loc}: {item.get('msg')}", file=sys.stderr)


def call(action: Callable[[NoetlClient], Awaitable[T]],
         on_error: Callable[[ClientError], None] | None = None) -> T:
    """Run `action` against the server; a ClientError prints (or goes to `on_error`) and exits."""
    url = server_url()
    assert url is not None, "call() is for client mode (NOETL_SERVER_URL set)"
    token = api_token()
    if token is None:
        print(f"error: NOETL_SERVER_URL is {url} but NOETL_TOKEN is not set (create a token with "
              "`noetl token create --role operator --name NAME` on the server's machine, or take the "
              "admin token `noetl dev up` prints)", file=sys.stderr)
        raise typer.Exit(EXIT_UNAVAILABLE)

    async def run() -> T:
        async with NoetlClient(url, token) as client:
            return await action(client)

    try:
        return asyncio.run(run())
    except ClientError as exc:
        if on_error is not None:
            on_error(exc)
        report(exc)
        raise typer.Exit(exit_code(exc)) from None
