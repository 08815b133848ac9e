"""The closed loop for real: per test a fresh database, the orchestrator and a worker pool (in this process),
the REST API on a free port, tokens of people with different roles, and the proposals agent (LangGraph,
checkpointed in the same Postgres)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.proposals.loop import ProposalLoop
from control_plane.services.auth import AuthService
from control_plane.services.policies import PolicyService, PolicySettings
from control_plane.stack import Stack
from tests.harness import runtime
from tests.harness.control_plane import serving_api
from tests.harness.polling import poll
from tests.harness.runtime import stack_config_of

runtime_env = runtime.runtime_env

MEASURE_AFTER = 3


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
    async with Stack(stack_config_of(runtime_env, workers={"default": 4})) as stack:
        assert stack.store is not None
        auth = AuthService(stack.store)
        tokens = {
            "agent": (await auth.create_token("ops-agent", "operator"))[1],
            "alice": (await auth.create_token("alice", "approver"))[1],
            "bob": (await auth.create_token("bob", "approver"))[1],
            "viewer": (await auth.create_token("watcher", "viewer"))[1],
        }
        async with serving_api(stack) as url:
            settings = PolicySettings(measure_after=MEASURE_AFTER, pools=("default",))
            policies = PolicyService(stack.store, settings)
            async with ProposalLoop.open(policies, pg_dsn, executions=stack.executions) as agent:
                yield Loop(stack, url, tokens, policies, agent, home, runtime_env)
