"""The closed loop for real: per test a fresh database, the orchestrator and a worker pool (in this process),
the REST API on a free port, tokens of people with different roles, and the proposals agent (LangGraph,
checkpointed in the same Postgres)."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.proposals.loop import ProposalLoop
from control_plane.server import serve_api
from control_plane.services.auth import AuthService
from control_plane.services.policies import PolicyService, PolicySettings
from control_plane.stack import Stack, StackConfig
from tests.harness.polling import poll

MEASURE_AFTER = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def runtime_env(nats_url: str, nats_prefix: str, pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "NOETL_NATS_URL": nats_url, "NOETL_PG_DSN": pg_dsn, "NOETL_BUS_PREFIX": nats_prefix,
            "NOETL_HOME": str(home), "NOETL_ACK_WAIT_S": "2"}


@dataclass
class Loop:
    """Everything a closed-loop test drives."""

    stack: Stack
    url: str
    tokens: dict[str, str]  # person -> token
    policies: PolicyService  # the agent's door (measures after MEASURE_AFTER executions)
    agent: ProposalLoop
    home: Path
    env: dict[str, str]

    def client(self, person: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.tokens[person]}"})

    async def register(self, name: str, body: str) -> str:
        assert self.stack.executions is not None
        text = (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: loop/{name}}}\n"
                + textwrap.dedent(body))
        return (await self.stack.executions.register(text)).path

    async def run(self, path: str, payload: dict[str, Any] | None = None,
                  timeout_s: float = 60) -> dict[str, Any]:
        """Start an execution and wait for its end; the summary (with the id)."""
        assert self.stack.executions is not None
        execution_id = await self.stack.executions.start(path, payload=payload)
        summary = await self.stack.executions.wait(execution_id, timeout_s=timeout_s)
        await settled(self.stack, execution_id)
        return summary

    async def events(self, execution_id: str) -> list[Any]:
        assert self.stack.store is not None
        return await self.stack.store.events.events(execution_id)


async def settled(stack: Stack, execution_id: str, timeout_s: float = 10) -> None:
    """The execution row's status is terminal (the orchestrator sets it right after the terminal event)."""
    store = stack.store
    assert store is not None

    async def terminal() -> bool:
        return (await store.executions.get(execution_id)).status in ("completed", "failed", "cancelled")

    await poll(terminal, timeout_s=timeout_s, what=f"execution {execution_id} to have a terminal status")


@pytest.fixture
async def loop(runtime_env: dict[str, str], pg_dsn: str) -> AsyncIterator[Loop]:
    home = Path(runtime_env["NOETL_HOME"])
    config = StackConfig(home=home, nats_url=runtime_env["NOETL_NATS_URL"], pg_dsn=pg_dsn,
                         prefix=runtime_env["NOETL_BUS_PREFIX"], ack_wait_s=2.0, workers={"default": 4})
    async with Stack(config) as stack:
        assert stack.store is not None
        auth = AuthService(stack.store)
        tokens = {
            "agent": (await auth.create_token("ops-agent", "operator"))[1],
            "alice": (await auth.create_token("alice", "approver"))[1],
            "bob": (await auth.create_token("bob", "approver"))[1],
            "viewer": (await auth.create_token("watcher", "viewer"))[1],
        }
        stop, ready, bound = asyncio.Event(), asyncio.Event(), []
        server = asyncio.create_task(serve_api(stack, host="127.0.0.1", port=0, stop=stop, ready=ready,
                                               bound=bound))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            settings = PolicySettings(measure_after=MEASURE_AFTER, pools=("default",))
            policies = PolicyService(stack.store, settings)
            async with ProposalLoop.open(policies, pg_dsn, executions=stack.executions) as agent:
                yield Loop(stack, f"http://127.0.0.1:{bound[0]}", tokens, policies, agent, home, runtime_env)
        finally:
            stop.set()
            await asyncio.wait_for(server, 15)
