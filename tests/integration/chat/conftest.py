"""The chat against a real control plane: per test module, a fresh database, a Stack (orchestrator and a
worker pool) and the REST API on a free port served as `noetl server start` serves it (the diagnosis, the
similar-failure search with its indexer, the chat), and a token of every role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from control_plane.stack import Stack, StackConfig
from tests.harness import control_plane
from tests.harness.control_plane import bootstrap_tokens, served_as_server_start

anyio_backend = control_plane.anyio_backend  # the harness's fixtures, for this package
module_stack_config = control_plane.module_stack_config


@dataclass
class ChatApi:
    url: str
    stack: Stack
    tokens: dict[str, str]

    def client(self, role: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60,
                                 headers={"Authorization": f"Bearer {self.tokens[role]}"})

    async def ask(self, role: str, message: str, conversation_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"message": message}
        if conversation_id:
            body["conversation_id"] = conversation_id
        async with self.client(role) as client:
            answer = await client.post("/api/chat", json=body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def run(self, text: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Register and run a playbook to its end; its summary."""
        executions = self.stack.executions
        assert executions is not None
        registered = await executions.register(text, "<chat test>")
        execution_id = await executions.start(registered.path, version=registered.version, payload=payload)
        return dict(await executions.wait(execution_id, timeout_s=60))


@pytest.fixture(scope="module")
async def chat_api(module_stack_config: StackConfig) -> AsyncIterator[ChatApi]:
    async with served_as_server_start(module_stack_config) as (stack, url):
        yield ChatApi(url=url, stack=stack, tokens=await bootstrap_tokens(stack))
