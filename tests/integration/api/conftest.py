"""The REST API over real HTTP: per test module, a fresh database, a Stack (orchestrator and a worker pool)
and `serve_api` on a free port in the same event loop, with a token of every role."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from control_plane.server import serve_api
from control_plane.stack import Stack, StackConfig
from engine.runtime.embedded import EmbeddedNats, EmbeddedPostgres
from noetl.insights import open_insights
from tests.harness.postgres import fresh_database
from tests.integration.api.helpers import Api, bootstrap_tokens


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def api_pg_dsn(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A database of this module's own (the harness's pg_dsn is per test)."""
    with fresh_database(pg_server, "api") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def stack_config(nats_server: EmbeddedNats, api_pg_dsn: str,
                 tmp_path_factory: pytest.TempPathFactory) -> StackConfig:
    home = tmp_path_factory.mktemp("api-home")
    return StackConfig(home=home, nats_url=nats_server.url, pg_dsn=api_pg_dsn,
                       prefix=f"t{uuid.uuid4().hex[:12]}", workers={"default": 2}, ack_wait_s=2.0)


@pytest.fixture(scope="module")
async def api(stack_config: StackConfig) -> AsyncIterator[Api]:
    async with Stack(stack_config) as stack:
        stop, ready, bound = asyncio.Event(), asyncio.Event(), []
        insights = await open_insights(stack, indexer=False)  # the diagnosis, as `noetl server start`
        server = asyncio.create_task(serve_api(stack, host="127.0.0.1", port=0, stop=stop, ready=ready,
                                               bound=bound, state=insights.state))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            yield Api(url=f"http://127.0.0.1:{bound[0]}", stack=stack, tokens=await bootstrap_tokens(stack))
        finally:
            stop.set()
            await asyncio.wait_for(server, 15)


@pytest.fixture
async def admin(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client("admin") as client:
        yield client
