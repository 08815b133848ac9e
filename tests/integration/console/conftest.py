"""The web console over real HTTP: per test module, a fresh database, a Stack and `serve_api` on a free port
(with the diagnosis, as `noetl server start`), a token of every role, and helpers to sign in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from control_plane.stack import Stack, StackConfig
from noetl.insights import open_insights
from tests.harness import control_plane
from tests.harness.control_plane import bootstrap_tokens, serving_api
from tests.integration.api.helpers import Api

anyio_backend = control_plane.anyio_backend  # the harness's fixtures, for this package
module_stack_config = control_plane.module_stack_config


@pytest.fixture(scope="module")
async def api(module_stack_config: StackConfig) -> AsyncIterator[Api]:
    async with Stack(module_stack_config) as stack:
        insights = await open_insights(stack, indexer=False)
        try:
            async with serving_api(stack, insights.state) as url:
                yield Api(url=url, stack=stack, tokens=await bootstrap_tokens(stack))
        finally:
            await insights.close()
