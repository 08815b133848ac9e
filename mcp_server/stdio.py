"""The MCP server over stdio (`noetl mcp`): one NoETL server, one token, both given by the entry point."""

from __future__ import annotations

from control_plane.client import NoetlClient
from mcp_server.api import fixed_api
from mcp_server.server import build_server


async def serve_stdio(base_url: str, token: str, *, timeout_s: float = 30.0) -> None:
    """Answer MCP on stdin/stdout until the client closes them; every tool goes to `base_url`'s API."""
    async with NoetlClient(base_url, token, timeout_s=timeout_s) as client:
        await build_server(fixed_api(client)).run_stdio_async()
