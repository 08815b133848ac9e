"""Triggers over the real stack: per test module a fresh database, a Stack (orchestrator, a worker pool),
the REST API on a free port and the trigger runner looking every 0.2 s, as `noetl server start` runs it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from control_plane.services.triggers import TriggerService
from control_plane.stack import Stack, StackConfig
from control_plane.triggers.runner import TriggerRunner
from tests.harness import control_plane
from tests.harness.control_plane import bootstrap_tokens, serving_api
from tests.integration.api.helpers import Api

anyio_backend = control_plane.anyio_backend
module_stack_config = control_plane.module_stack_config


class TriggerApi(Api):
    service: TriggerService


@pytest.fixture(scope="module")
async def api(module_stack_config: StackConfig) -> AsyncIterator[TriggerApi]:
    async with Stack(module_stack_config) as stack:
        assert stack.store is not None and stack.bus is not None
        service = TriggerService(stack.store, stack.executions, stack.bus)
        stop = asyncio.Event()
        runner = asyncio.create_task(TriggerRunner(service, stack.bus, tick_s=0.2).run(stop, asyncio.Event()))
        try:
            async with serving_api(stack) as url:
                served = TriggerApi(url=url, stack=stack, tokens=await bootstrap_tokens(stack))
                served.service = service
                yield served
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(runner, 15)
