"""serve_api: listens on a free port in the running loop, reports it, refuses a taken port with an error
that says so, and stops (ending open event streams) when told."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from control_plane.errors import ControlPlaneError
from control_plane.server import serve_api
from tests.harness.playbooks import held_until
from tests.harness.polling import poll
from tests.integration.api.helpers import Api, execute, playbook, register, unique

pytestmark = pytest.mark.anyio


async def test_a_taken_port_is_refused_with_an_error_naming_it(api: Api) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ControlPlaneError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve_api(api.stack, host="127.0.0.1", port=port, stop=asyncio.Event())


async def test_stopping_the_server_ends_open_streams_and_returns_promptly(api: Api) -> None:
    release = api.stack.config.home / unique("release")
    stop, ready, bound = asyncio.Event(), asyncio.Event(), []
    server = asyncio.create_task(serve_api(api.stack, host="127.0.0.1", port=0, stop=stop, ready=ready,
                                           bound=bound))
    await asyncio.wait_for(ready.wait(), 10)
    url = f"http://127.0.0.1:{bound[0]}"
    async with httpx.AsyncClient(base_url=url, headers=api.headers("admin"), timeout=30) as client:
        name = unique("held")
        await register(client, playbook(name, held_until(release)))
        execution_id = await execute(client, name)
        lines: list[str] = []
        async with client.stream("GET", f"/api/executions/{execution_id}/stream") as response:
            async def read() -> None:
                async for line in response.aiter_lines():
                    lines.append(line)

            reader = asyncio.create_task(read())
            await poll(lambda: any(line == "event: step.started" for line in lines), what="step.started")
            stop.set()
            await asyncio.wait_for(reader, 5)  # the stream ended without its terminal event
        await asyncio.wait_for(server, 10)
    assert "event: execution.completed" not in lines
    release.write_text("go")
    async with api.client("admin") as admin:  # the module's server still answers
        assert (await admin.get(f"/api/executions/{execution_id}")).status_code == 200
