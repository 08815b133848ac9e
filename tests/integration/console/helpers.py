"""Helpers of the console tests: a signed-in browser-like client, the CSRF token of a page, a failed
execution and a proposal made through the API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.integration.api.helpers import Api, execute, playbook, register, unique, wait_ended

COOKIE = "noetl_session"
FAILING = """\
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: divide}]}
  - step: divide
    tool: {kind: python, code: "result = 1 / 0"}
    next: {arcs: [{step: report}]}
  - step: report
    tool: {kind: noop}
"""


def browser(api: Api, **kwargs: Any) -> httpx.AsyncClient:
    """A client that sends what a browser on the console's pages sends: its Origin, no bearer token."""
    return httpx.AsyncClient(base_url=api.url, headers={"Origin": api.url}, timeout=30, **kwargs)


async def sign_in(client: httpx.AsyncClient, token: str, next_path: str | None = None) -> httpx.Response:
    """Post the sign-in form; the client keeps the session cookie it is given."""
    form = {"token": token, **({"next": next_path} if next_path else {})}
    return await client.post("/ui/sign-in", data=form)


@asynccontextmanager
async def signed_in(api: Api, role: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(api) as client:
        response = await sign_in(client, api.tokens[role])
        assert response.status_code == 303, response.text
        yield client


def csrf_of(html: str) -> str:
    """The CSRF token the page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def failed_execution(api: Api) -> tuple[str, str]:
    """A playbook whose second step divides by zero, run to its failure: (path, execution id)."""
    name = unique("console_fail")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, FAILING))
        execution_id = await execute(admin, name)
        doc = await wait_ended(admin, execution_id)
    assert doc["status"] == "failed", doc
    return name, execution_id


async def proposal(api: Api, role: str = "operator") -> tuple[str, str]:
    """A fresh playbook and a proposal (by `role`'s token) to give its step `a` a timeout: (path, id)."""
    name = unique("console_prop")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, "workflow:\n  - {step: a, tool: {kind: noop}}\n"))
    async with api.client(role) as author:
        response = await author.post("/api/proposals", json={
            "target": {"path": name, "step": "a"}, "change": {"timeout_s": 7},
            "rationale": f"the step needs a bound ({name})"})
        assert response.status_code == 201, response.text
        return name, str(response.json()["id"])


async def proposal_state(api: Api, proposal_id: str) -> str:
    async with api.client("viewer") as viewer:
        response = await viewer.get(f"/api/proposals/{proposal_id}")
        assert response.status_code == 200, response.text
        return str(response.json()["state"])
