"""The MCP server against a real control plane: per test module, a fresh database, a Stack (orchestrator
and a worker pool) and the REST API on a free port served by the `noetl` entry point's own `start_api`
with what `noetl server start` gives it (the MCP server at /mcp, the diagnosis, the similar-failure search
and the indexer), and a token of every role. Sessions use the SDK's own client, over streamable HTTP or
over stdio (`python -m noetl.cli mcp` with NOETL_SERVER_URL and NOETL_TOKEN)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from control_plane.stack import StackConfig
from tests.harness import control_plane
from tests.harness.control_plane import bootstrap_tokens, served_as_server_start
from tests.integration.mcp.helpers import McpApi, http_session, stdio_session

REPO = Path(__file__).resolve().parents[3]

anyio_backend = control_plane.anyio_backend  # the harness's fixtures, for this package
module_stack_config = control_plane.module_stack_config


@pytest.fixture(scope="module")
async def mcp_api(module_stack_config: StackConfig) -> AsyncIterator[McpApi]:
    async with served_as_server_start(module_stack_config) as (stack, url):
        yield McpApi(url=url, stack=stack, tokens=await bootstrap_tokens(stack),
                     home=module_stack_config.home)


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest, mcp_api: McpApi) -> Callable[[str], object]:
    """`async with connect(role) as session`: an initialized MCP session acting with that role's token."""
    transport = request.param

    @asynccontextmanager
    async def open_session(role: str) -> AsyncIterator[object]:
        token = mcp_api.tokens[role]
        if transport == "http":
            async with http_session(mcp_api.url, token) as session:
                yield session
        else:
            env = {"NOETL_SERVER_URL": mcp_api.url, "NOETL_TOKEN": token, "NOETL_HOME": str(mcp_api.home),
                   "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
            async with stdio_session(sys.executable, ["-m", "noetl.cli", "mcp"], env, cwd=REPO) as session:
                yield session

    open_session.transport = transport  # type: ignore[attr-defined]
    return open_session
