"""How a tool reaches the control plane: always through its REST API (`NoetlClient`), with the caller's token.

The API enforces the roles, so a tool can do exactly what its caller's token may do, never more:

- over stdio, one client built at the entry point from NOETL_SERVER_URL + NOETL_TOKEN (`fixed_api`);
- mounted at /mcp on the control plane's server, a client per call with the HTTP request's own
  `Authorization: Bearer` token, to the server the request arrived at (`loopback_api`).

A refusal of the API (`ClientError`) becomes an MCP tool error (or a resource error) carrying the API's
problem as it was sent: status, code, detail, where, fix and the located errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from control_plane.client import ClientError, NoetlClient, ServerUnreachableError
from engine.errors import NoetlError

__all__ = ["Api", "ApiFactory", "fixed_api", "loopback_api", "problem_text"]

ApiFactory = Callable[[Context | None], AbstractAsyncContextManager[NoetlClient]]
"""Given the request's context (None outside a request), a client of the API acting for the caller."""

_NO_TOKEN = ("no bearer token on this MCP request", "Authorization header",
             "send `Authorization: Bearer <token>` (create one with "
             "`noetl token create --role ROLE --name N`)")


def problem_text(error: ClientError) -> str:
    """The API's problem as one text: `STATUS CODE: DETAIL`, then where, fix and the located errors."""
    lines = [f"{error.status} {error.code}: {error.detail or error.title}"]
    if error.where:
        lines.append(f"where: {error.where}")
    if error.fix:
        lines.append(f"fix: {error.fix}")
    for item in error.errors:
        if "line" in item:  # a playbook that does not validate
            lines.append(f"  line {item.get('line')}, column {item.get('column')} "
                         f"{item.get('path') or '(document)'}: {item.get('message')} [{item.get('code')}]")
        else:  # a malformed request: {loc, msg, type}
            loc = ".".join(str(part) for part in item.get("loc") or [])
            lines.append(f"  {loc}: {item.get('msg')}")
    return "\n".join(lines)


def _error_text(error: NoetlError) -> str:
    return problem_text(error) if isinstance(error, ClientError) else str(error)


class Api:
    """The tools' door to the control plane: `async with api.tool(ctx) as client: ...`."""

    def __init__(self, factory: ApiFactory) -> None:
        self._factory = factory

    @asynccontextmanager
    async def tool(self, ctx: Context | None) -> AsyncIterator[NoetlClient]:
        """A client for this call; the API's refusals become tool errors (the session goes on)."""
        try:
            async with self._factory(ctx) as client:
                yield client
        except (ClientError, ServerUnreachableError) as exc:
            raise ToolError(_error_text(exc)) from None

    @asynccontextmanager
    async def resource(self, ctx: Context | None, uri: str) -> AsyncIterator[NoetlClient]:
        """Like `tool` for a resource read: an unknown id or path is ResourceNotFoundError."""
        try:
            async with self._factory(ctx) as client:
                yield client
        except ClientError as exc:
            if exc.status == 404:
                raise ResourceNotFoundError(f"{uri}: {problem_text(exc)}") from None
            raise ResourceError(f"{uri}: {problem_text(exc)}") from None
        except ServerUnreachableError as exc:
            raise ResourceError(f"{uri}: {exc}") from None


def fixed_api(client: NoetlClient) -> ApiFactory:
    """Every call goes through `client` (stdio: one server, one token, read at the entry point)."""

    @asynccontextmanager
    async def factory(_: Context | None) -> AsyncIterator[NoetlClient]:
        yield client

    return factory


def bearer_of(headers: Any) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (a Starlette Headers or a mapping)."""
    value = headers.get("authorization") if headers is not None else None
    if not value:
        return None
    scheme, _, token = str(value).strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _origin(scope: dict[str, Any]) -> str:
    """The URL of the server the request arrived at (its own socket: a loopback to the same server)."""
    host, port = scope.get("server") or ("127.0.0.1", 80)
    host = "127.0.0.1" if host in ("0.0.0.0", "", None) else ("::1" if host == "::" else str(host))
    if ":" in host:
        host = f"[{host}]"
    return f"{scope.get('scheme') or 'http'}://{host}:{port}"


def loopback_api(base_url: str | None = None, *, timeout_s: float = 30.0) -> ApiFactory:
    """A client per call with the HTTP request's own bearer token, to `base_url` (default: the server
    the request arrived at)."""

    @asynccontextmanager
    async def factory(ctx: Context | None) -> AsyncIterator[NoetlClient]:
        request = ctx.request_context.request if ctx is not None else None
        token = bearer_of(getattr(request, "headers", None))
        if request is None or token is None:
            message, where, fix = _NO_TOKEN
            raise ClientError(401, title="Unauthorized", detail=message, code="unauthorized", where=where,
                              fix=fix)
        url = base_url or _origin(request.scope)
        async with NoetlClient(url, token, timeout_s=timeout_s) as client:
            yield client

    return factory
