"""Helpers of the API tests: the running API, playbooks, bounded polling, problem+json checks."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from control_plane.stack import Stack, StackConfig
from noetl.insights import open_insights
from tests.harness.control_plane import bootstrap_tokens, serving_api
from tests.harness.polling import poll

PROBLEM = "application/problem+json"


@dataclass
class Api:
    """The running API: its URL, the stack behind it, and a token per role."""

    url: str
    stack: Stack
    tokens: dict[str, str]

    def headers(self, role: str | None = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}

    def client(self, role: str | None = "admin", **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers(role), timeout=30, **kwargs)


def playbook(name: str, body: str) -> str:
    """A playbook named `name` (also its catalog path) with the given (dedented) body."""
    return f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}}}\n" + textwrap.dedent(body)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def register(client: httpx.AsyncClient, text: str) -> dict[str, Any]:
    response = await client.post("/api/catalog/register", content=text,
                                 headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    return response.json()


async def execute(client: httpx.AsyncClient, path: str, **body: Any) -> str:
    response = await client.post("/api/execute", json={"path": path, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["execution_id"])




async def wait_ended(client: httpx.AsyncClient, execution_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """GET /api/executions/{id} until the execution has ended; its last answer."""

    async def ended() -> dict[str, Any] | None:
        response = await client.get(f"/api/executions/{execution_id}")
        assert response.status_code == 200, response.text
        doc = response.json()
        return doc if doc["ended_at"] is not None else None

    return await poll(ended, timeout_s=timeout_s, what=f"execution {execution_id} to end")


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is a problem+json document of that status (and code)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    doc = response.json()
    assert doc["status"] == status
    assert doc["type"] == f"https://noetl.dev/problems/{doc['code']}"
    assert doc["title"] and doc["detail"] and doc["code"]
    assert {"where", "fix"} <= doc.keys()
    if code is not None:
        assert doc["code"] == code, doc
    return doc


class ThreadedApi:
    """The same API served from a thread with its own event loop: for synchronous clients
    (schemathesis), which would otherwise block the loop the server runs in."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.url = ""
        self.tokens: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="noetl-api", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Stack(self.config) as stack:
            insights = await open_insights(stack, indexer=False)
            async with serving_api(stack, insights.state) as url:
                self.url = url
                self.tokens = await bootstrap_tokens(stack)
                self._started.set()
                await self._stop.wait()

    def start(self) -> ThreadedApi:
        self._thread.start()
        if not self._started.wait(60) or self._error is not None:
            raise RuntimeError(f"the threaded API did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
