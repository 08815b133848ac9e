"""The MCP server as streamable HTTP, mounted at /mcp on the control plane's server.

    mcp = McpHttpApp(authenticate=check)     # check(token) -> bool: is it a known token?
    serve_api(stack, ..., mounts=[mcp])      # answered at mcp.path; mcp.running() entered while serving

Every request must carry `Authorization: Bearer <token>` (401 problem+json otherwise, before the MCP
transport sees it); each tool call then goes to the REST API of the same server with that request's own
token (`loopback_api`), so the API enforces the caller's role. The session manager's task group lives in
`running()` (the control plane's server runs without ASGI lifespan events).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings

from mcp_server.api import bearer_of, loopback_api
from mcp_server.server import build_server

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection for a loopback server (as the SDK does); a server listening on other
    addresses is reached by other names, and every request needs a bearer token anyway."""
    if host in LOOPBACK_HOSTS:
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


class McpHttpApp:
    """An ASGI app answering MCP's streamable HTTP at `path`, for bearer tokens only."""

    def __init__(self, *, authenticate: Callable[[str], Awaitable[bool]] | None = None,
                 host: str = "127.0.0.1", base_url: str | None = None, path: str = PATH) -> None:
        self.path = path
        self._authenticate = authenticate
        self.server = build_server(loopback_api(base_url))
        self.server.streamable_http_app(streamable_http_path=path, transport_security=_security(host),
                                        host=host)  # builds the session manager (its app is not used)
        self._transport = StreamableHTTPASGIApp(self.server.session_manager)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The session manager runs (its sessions' tasks) while the server serves; once per instance."""
        async with self.server.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        token = bearer_of(headers)
        if token is None:
            await _unauthorized(send, "the MCP endpoint needs a bearer token",
                                "send `Authorization: Bearer <token>` (`noetl token create --role ROLE "
                                "--name NAME`, or the admin token `noetl dev up` prints)")
            return
        if self._authenticate is not None and not await self._authenticate(token):
            await _unauthorized(send, "the bearer token is unknown or revoked",
                                "create a token with `noetl token create --role ROLE --name NAME`")
            return
        await self._transport(scope, receive, send)


async def _unauthorized(send: Send, detail: str, fix: str) -> None:
    """401 as every NoETL endpoint answers it (application/problem+json)."""
    body = json.dumps({"type": "https://noetl.dev/problems/unauthorized", "title": "Unauthorized",
                       "status": 401, "detail": detail, "code": "unauthorized",
                       "where": "Authorization header", "fix": fix}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="noetl"')]})
    await send({"type": "http.response.body", "body": body})
