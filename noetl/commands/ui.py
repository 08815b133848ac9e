"""`noetl ui [--path P] [--print-url]`: open the web console signed in, through a one-time link.

The server is NOETL_SERVER_URL, else the running `noetl dev up` stack's API; the token is NOETL_TOKEN,
else (for the dev stack) the token it made for this home's command line. The link (POST /api/ui/links)
signs in once, within 60 seconds, as that token (docs/console.md).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from noetl.devstack import cli_token_file, running_dev_stack
from noetl.settings import api_token, server_url

EXIT_INVALID, EXIT_UNAVAILABLE = 2, 3


def _fail(message: str, code: int = EXIT_UNAVAILABLE) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _target() -> tuple[str, str]:
    """The API's URL and the token to ask it with, or a refusal saying how to get them."""
    url = server_url()
    token = api_token()
    if url is None:
        state = running_dev_stack()
        url = str(state["api_url"]) if state and state.get("api_url") else None
        if url is not None and token is None:
            try:
                token = cli_token_file().read_text().strip() or None
            except OSError:
                token = None
    if url is None:
        raise _fail("no NoETL server to open the console of: set NOETL_SERVER_URL (e.g. "
                    "http://127.0.0.1:8082), or start one with `noetl dev up`")
    if token is None:
        raise _fail(f"NOETL_TOKEN is not set (the server is {url}): create a token with `noetl token create "
                    "--role viewer --name NAME` (or approver, to decide proposals) and export it as "
                    "NOETL_TOKEN")
    return url, token


def ui(
    path: Annotated[str | None, typer.Option("--path", help="The console page to open, e.g. /ui/proposals "
                                                            "(default: /ui/executions).")] = None,
    print_url: Annotated[bool, typer.Option("--print-url", help="Print the sign-in link instead of opening "
                                                                "a browser.")] = False,
) -> None:
    """Open the web console in a browser, signed in as NOETL_TOKEN (the link works once, for 60 s)."""
    import asyncio

    from control_plane.client import ClientError, NoetlClient, ServerUnreachableError

    url, token = _target()

    async def ask() -> dict[str, object]:
        async with NoetlClient(url, token, timeout_s=10.0) as client:
            return await client.ui_link(path)

    try:
        link = asyncio.run(ask())
    except ServerUnreachableError as exc:
        raise _fail(f"{exc.message}; {exc.fix}") from None
    except ClientError as exc:
        code = EXIT_INVALID if exc.status == 400 or exc.status == 422 else EXIT_UNAVAILABLE
        raise _fail(f"{exc}" + (f" ({exc.fix})" if exc.fix else ""), code) from None
    signin = str(link["url"])
    if print_url:
        print(signin)
        return
    import webbrowser

    if webbrowser.open(signin):
        print(f"opened the console in your browser (the link works once, until {link['expires_at']})",
              file=sys.stderr)
        return
    print("no browser could be opened here: open this link (it works once, within 60 s):", file=sys.stderr)
    print(signin)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
