"""`noetl mcp`: NoETL as MCP tools for an LLM assistant, over stdio (docs: README, "Use NoETL from an MCP
client"). The server is NOETL_SERVER_URL (else the running `noetl dev up` stack's API), the token
NOETL_TOKEN: every tool goes through that server's REST API with that token's role."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import typer

from noetl.commands.stack import running_dev_stack
from noetl.settings import api_token, server_url

if TYPE_CHECKING:
    from control_plane.stack import Stack
    from mcp_server.http import McpHttpApp

EXIT_UNAVAILABLE = 3


def http_mount(stack: Stack, host: str) -> McpHttpApp:
    """The MCP server as streamable HTTP at /mcp of the control plane's server: a request without a known
    token is 401 there; each tool call goes to the REST API with the request's own token."""
    from control_plane.errors import ForbiddenError, UnauthorizedError
    from control_plane.services.auth import AuthService
    from mcp_server.http import McpHttpApp

    assert stack.store is not None, "the stack is not started"
    auth = AuthService(stack.store)

    async def known(token: str) -> bool:
        try:
            await auth.authorize(token, "viewer")
        except (UnauthorizedError, ForbiddenError):
            return False
        return True

    return McpHttpApp(authenticate=known, host=host)


def mcp_command() -> None:
    """Serve NoETL's MCP tools, resources and prompts on stdin/stdout (for an MCP client's config)."""
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
