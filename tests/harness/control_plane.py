"""The control plane in tests: a runtime per test module, a token of every role, the REST API on a port."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest

from control_plane.server import serve_api
from control_plane.services.auth import ROLES, AuthService
from control_plane.stack import Stack, StackConfig
from engine.runtime.embedded import EmbeddedNats, EmbeddedPostgres
from tests.harness.postgres import fresh_database


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio, one event loop per test module: for module-scoped async fixtures (a served API)."""
    return "asyncio"


@pytest.fixture(scope="module")
def module_stack_config(nats_server: EmbeddedNats, pg_server: EmbeddedPostgres,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    """A runtime of this test module's own: a fresh database (dropped afterwards), a home, a bus prefix,
    the orchestrator and a worker pool of 2 (the harness's pg_dsn is per test)."""
    with fresh_database(pg_server, "module") as dsn:
        yield StackConfig(home=tmp_path_factory.mktemp("home"), nats_url=nats_server.url, pg_dsn=dsn,
                          prefix=f"t{uuid.uuid4().hex[:12]}", workers={"default": 2}, ack_wait_s=2.0)


async def bootstrap_tokens(stack: Stack) -> dict[str, str]:
    """A token of every role, made on the server's side (as `noetl token create` does without a server)."""
    assert stack.store is not None
    auth = AuthService(stack.store)
    return {role: (await auth.create_token(f"test-{role}", role))[1] for role in ROLES}


@asynccontextmanager
async def serving_api(stack: Stack, state: Mapping[str, Any] | None = None) -> AsyncIterator[str]:
    """`serve_api` on a free 127.0.0.1 port in this event loop; its base URL until the block ends."""
    stop, ready, bound = asyncio.Event(), asyncio.Event(), []
    server = asyncio.create_task(serve_api(stack, host="127.0.0.1", port=0, stop=stop, ready=ready,
                                           bound=bound, state=state))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield f"http://127.0.0.1:{bound[0]}"
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)


@asynccontextmanager
async def served_as_server_start(config: StackConfig) -> AsyncIterator[tuple[Stack, str]]:
    """A Stack and its REST API on a free port as `noetl server start` serves them (the MCP server at /mcp,
    the diagnosis, the similar-failure search with its indexer, the chat): (stack, base URL)."""
    from noetl.insights import open_insights
    from noetl.serving import start_api

    async with Stack(config) as stack:
        stop = asyncio.Event()
        insights = await open_insights(stack, indexer=True)
        try:
            server, url = await start_api(stack, "127.0.0.1", 0, stop, insights.state)
            try:
                yield stack, url
            finally:
                stop.set()
                await asyncio.wait_for(server, 15)
        finally:
            await insights.close()
