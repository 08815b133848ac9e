"""`noetl mcp`: NoETL as MCP tools for an LLM assistant, over stdio (docs: README, "Use NoETL from an MCP
client"). The server is NOETL_SERVER_URL (else the running `noetl dev up` stack's API), the token
NOETL_TOKEN: every tool goes through that server's REST API with that token's role."""

from __future__ import annotations

import sys

import typer

from noetl.devstack import running_dev_stack
from noetl.settings import api_token, server_url

EXIT_UNAVAILABLE = 3


def mcp_command() -> None:
    """Serve NoETL's MCP tools, resources and prompts on stdin/stdout (for an MCP client's config)."""
    import asyncio

    url = server_url()
    if url is None:
        state = running_dev_stack()
        url = str(state["api_url"]) if state and state.get("api_url") else None
    if url is None:
        print("error: no NoETL server: set NOETL_SERVER_URL (e.g. http://127.0.0.1:8082), or start one "
              "with `noetl dev up`", file=sys.stderr)
        raise typer.Exit(EXIT_UNAVAILABLE)
    token = api_token()
    if token is None:
        print(f"error: NOETL_TOKEN is not set (the server is {url}): create a token with `noetl token create "
              "--role operator --name NAME`, or take the admin token `noetl dev up` prints", file=sys.stderr)
        raise typer.Exit(EXIT_UNAVAILABLE)
    from mcp_server.stdio import serve_stdio  # the mcp SDK only when serving it

    asyncio.run(serve_stdio(url, token))


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp_command)
