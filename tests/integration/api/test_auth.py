"""Every endpoint checks the bearer token and its role: 401 without a valid token, 403 with too weak a
role, an answer with the needed role. The table covers every route the app has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest

from control_plane.app import create_app, routes_of
from control_plane.services.auth import ROLES, AuthService
from tests.harness.playbooks import held_until
from tests.integration.api.helpers import (
    Api,
    assert_problem,
    execute,
    playbook,
    register,
    unique,
    wait_ended,
)

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as the app declares it
    role: str | None  # None: public
    url: str  # a concrete URL ({} filled from the fixtures)
    body: Any = None
    content_type: str | None = None


TABLE: list[Endpoint] = [
    Endpoint("GET", "/health", None, "/health"),
    Endpoint("GET", "/metrics", "viewer", "/metrics"),
    Endpoint("GET", "/openapi.json", "viewer", "/openapi.json"),
    Endpoint("GET", "/docs", "viewer", "/docs"),
    Endpoint("POST", "/api/catalog/register", "operator", "/api/catalog/register", "{playbook}",
             "application/yaml"),
    Endpoint("GET", "/api/catalog", "viewer", "/api/catalog"),
    Endpoint("GET", "/api/catalog/playbook", "viewer", "/api/catalog/playbook?path={path}"),
    Endpoint("GET", "/api/catalog/versions", "viewer", "/api/catalog/versions?path={path}"),
    Endpoint("DELETE", "/api/catalog/playbook", "operator", "/api/catalog/playbook?path={deletable}"),
    Endpoint("POST", "/api/execute", "operator", "/api/execute", {"path": "{path}"}),
    Endpoint("GET", "/api/executions", "viewer", "/api/executions"),
    Endpoint("GET", "/api/executions/{id}", "viewer", "/api/executions/{ended}"),
    Endpoint("GET", "/api/executions/{id}/events", "viewer", "/api/executions/{ended}/events"),
    Endpoint("GET", "/api/executions/{id}/stream", "viewer", "/api/executions/{ended}/stream"),
    Endpoint("POST", "/api/executions/{id}/cancel", "operator", "/api/executions/{running}/cancel"),
    Endpoint("PUT", "/api/credentials/{name}", "admin", "/api/credentials/{credential}",
             {"type": "http", "data": {"token": "x"}}),
    Endpoint("GET", "/api/credentials", "viewer", "/api/credentials"),
    Endpoint("GET", "/api/credentials/{name}", "viewer", "/api/credentials/{credential}"),
    Endpoint("DELETE", "/api/credentials/{name}", "admin", "/api/credentials/{credential}"),
    Endpoint("POST", "/api/tokens", "admin", "/api/tokens", {"name": "made-by-test", "role": "viewer"}),
    Endpoint("GET", "/api/tokens", "admin", "/api/tokens"),
    Endpoint("DELETE", "/api/tokens/{id}", "admin", "/api/tokens/{token_id}"),
    Endpoint("GET", "/api/proposals", "viewer", "/api/proposals"),
    Endpoint("GET", "/api/proposals/{id}", "viewer", "/api/proposals/{proposal}"),
    Endpoint("POST", "/api/proposals", "operator", "/api/proposals",
             {"target": {"path": "{proposable}", "step": "a"}, "change": {"timeout_s": 5},
              "rationale": "test"}),
    Endpoint("POST", "/api/proposals/{id}/approve", "approver", "/api/proposals/{proposal}/approve",
             {"reason": "ok"}),
    Endpoint("POST", "/api/proposals/{id}/reject", "approver", "/api/proposals/{proposal}/reject",
             {"reason": "no"}),
    Endpoint("POST", "/api/proposals/{id}/rollback", "approver", "/api/proposals/{proposal}/rollback"),
    Endpoint("GET", "/api/policies", "viewer", "/api/policies?path={path}"),
    Endpoint("GET", "/api/executions/{id}/diagnosis", "viewer", "/api/executions/{ended}/diagnosis"),
    Endpoint("GET", "/api/executions/{id}/similar", "viewer", "/api/executions/{ended}/similar"),
    Endpoint("GET", "/api/search", "viewer", "/api/search?q=connection%20refused"),
    Endpoint("POST", "/api/chat", "viewer", "/api/chat", {"message": "what failed most recently?"}),
    Endpoint("GET", "/api/chat/{conversation_id}", "viewer", "/api/chat/{conversation}"),
    Endpoint("GET", "/api/pools", "viewer", "/api/pools"),
    Endpoint("GET", "/api/orchestrators", "viewer", "/api/orchestrators"),
    Endpoint("GET", "/api/insights", "viewer", "/api/insights?since=1d"),
    Endpoint("POST", "/api/ui/links", "viewer", "/api/ui/links", {}),
    Endpoint("POST", "/api/triggers", "operator", "/api/triggers",
             {"path": "{path}", "every": "1h", "paused": True}),
    Endpoint("GET", "/api/triggers", "viewer", "/api/triggers"),
    Endpoint("GET", "/api/triggers/{id}", "viewer", "/api/triggers/{trigger}"),
    Endpoint("GET", "/api/triggers/{id}/events", "viewer", "/api/triggers/{trigger}/events"),
    Endpoint("POST", "/api/triggers/{id}/pause", "operator", "/api/triggers/{trigger}/pause"),
    Endpoint("POST", "/api/triggers/{id}/resume", "operator", "/api/triggers/{trigger}/resume"),
    Endpoint("DELETE", "/api/triggers/{id}", "operator", "/api/triggers/{trigger}"),
]
# webhook deliveries are signed (HMAC of the body with the trigger's secret), not sent with a token:
# tests/integration/triggers
SIGNED = {("POST", "/api/hooks/{id}")}
# the web console's pages (/ui) take a session cookie, not a bearer token: tests/integration/console
CONSOLE = "/ui"
# served by the embeddings index, which this harness does not load (tests/integration/embeddings does):
# past the role check they answer 503 similar_unavailable
WITHOUT_INDEX = {"/api/executions/{id}/similar", "/api/search"}
IDS = [f"{e.method} {e.path}" for e in TABLE]
PROTECTED = [e for e in TABLE if e.role is not None]
PROTECTED_IDS = [f"{e.method} {e.path}" for e in PROTECTED]
WEAKER = [(e, role) for e in PROTECTED for role in ROLES[:ROLES.index(e.role)]]  # type: ignore[arg-type]


def test_the_table_covers_every_route_of_the_app_with_the_role_it_declares() -> None:
    app = create_app(MagicMock())
    declared = {(r.method, r.path): r.role for r in routes_of(app)
                if r.path != CONSOLE and not r.path.startswith(CONSOLE + "/")
                and (r.method, r.path) not in SIGNED}
    assert declared == {(e.method, e.path): e.role for e in TABLE}


@pytest.fixture(scope="module")
async def fixtures(api: Api) -> AsyncIterator[dict[str, str]]:
    """Things the URLs name: a playbook, an ended and a running execution, a credential."""
    name = unique("auth")
    release = api.stack.config.home / f"{name}.release"
    async with api.client("admin") as admin:
        await register(admin, playbook(name, "workflow:\n  - {step: a, tool: {kind: noop}}\n"))
        waiting = unique("auth_wait")
        await register(admin, playbook(waiting, held_until(release)))
        ended = await execute(admin, name)
        running = await execute(admin, waiting)
        await wait_ended(admin, ended)
        trigger = (await admin.post("/api/triggers", json={"path": name, "every": "1h",
                                                           "paused": True})).json()
        yield {"path": name, "ended": ended, "running": running, "waiting": waiting, "trigger": trigger["id"]}
        release.write_text("go")


async def _call(api: Api, endpoint: Endpoint, values: dict[str, str],
                headers: dict[str, str]) -> httpx.Response:
    url = endpoint.url.format(**values)
    kwargs: dict[str, Any] = {"headers": dict(headers)}
    if isinstance(endpoint.body, str):
        kwargs["content"] = endpoint.body.format(**values)
        kwargs["headers"]["Content-Type"] = endpoint.content_type or "application/json"
    elif endpoint.body is not None:
        kwargs["json"] = _fill(endpoint.body, values)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        if endpoint.path.endswith("/stream"):
            async with client.stream(endpoint.method, url, **kwargs) as response:
                await response.aread()
                return response
        return await client.request(endpoint.method, url, **kwargs)


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def _values(fixtures: dict[str, str], **more: str) -> dict[str, str]:
    return {"playbook": playbook(unique("auth_reg"), "workflow:\n  - {step: a, tool: {kind: noop}}\n"),
            "credential": "auth_credential", "token_id": "none", "deletable": "none", "proposal": "none",
            "proposable": "none", "conversation": "none", **fixtures, **more}


@pytest.mark.parametrize("endpoint", PROTECTED, ids=PROTECTED_IDS)
async def test_a_request_without_a_token_is_answered_401(api: Api, fixtures: dict[str, str],
                                                         endpoint: Endpoint) -> None:
    response = await _call(api, endpoint, _values(fixtures), {})
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("endpoint", PROTECTED, ids=PROTECTED_IDS)
async def test_a_request_with_an_unknown_token_is_answered_401(api: Api, fixtures: dict[str, str],
                                                               endpoint: Endpoint) -> None:
    bogus = "noetl_" + "A" * 43
    for header in (f"Bearer {bogus}", "Bearer not-a-noetl-token", f"Basic {bogus}", "Bearer"):
        response = await _call(api, endpoint, _values(fixtures), {"Authorization": header})
        assert_problem(response, 401, "unauthorized")


async def test_a_revoked_token_is_answered_401_everywhere(api: Api, fixtures: dict[str, str]) -> None:
    assert api.stack.store is not None
    info, token = await AuthService(api.stack.store).create_token("soon-revoked", "admin")
    async with api.client("admin") as admin:
        assert (await admin.delete(f"/api/tokens/{info.token_id}")).status_code == 204
    for endpoint in PROTECTED:
        response = await _call(api, endpoint, _values(fixtures), {"Authorization": f"Bearer {token}"})
        assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize(("endpoint", "role"), WEAKER, ids=[f"{e.method} {e.path} as {r}" for e, r in WEAKER])
async def test_a_token_with_too_weak_a_role_is_answered_403(api: Api, fixtures: dict[str, str],
                                                            endpoint: Endpoint, role: str) -> None:
    response = await _call(api, endpoint, _values(fixtures), api.headers(role))
    doc = assert_problem(response, 403, "forbidden")
    assert endpoint.role in doc["detail"] and role in doc["detail"]


@pytest.mark.parametrize("endpoint", TABLE, ids=IDS)
async def test_the_needed_role_is_allowed(api: Api, fixtures: dict[str, str], endpoint: Endpoint) -> None:
    values = _values(fixtures)
    async with api.client("admin") as admin:  # what the call consumes, made fresh
        if endpoint.path == "/api/catalog/playbook" and endpoint.method == "DELETE":
            values["deletable"] = (await register(admin, values["playbook"]))["path"]
        if endpoint.path == "/api/credentials/{name}":
            response = await admin.put("/api/credentials/auth_credential",
                                       json={"type": "http", "data": {"token": "x"}})
            assert response.status_code == 200
        if endpoint.path == "/api/tokens/{id}":
            values["token_id"] = (await admin.post("/api/tokens", json={"name": "to-revoke",
                                                                         "role": "viewer"})).json()["id"]
        if endpoint.method == "DELETE" and endpoint.path == "/api/triggers/{id}":
            values["trigger"] = (await admin.post("/api/triggers", json={
                "path": fixtures["path"], "every": "1h", "paused": True})).json()["id"]
        if endpoint.path.endswith("/cancel"):
            values["running"] = await execute(admin, fixtures["waiting"])
        if endpoint.path == "/api/chat/{conversation_id}":  # one of the calling token's conversations
            async with api.client(str(endpoint.role)) as asker:
                values["conversation"] = (await asker.post("/api/chat", json={"message": "any proposals?"})
                                          ).json()["conversation_id"]
        if endpoint.path.startswith("/api/proposals"):  # a fresh playbook (one open proposal per step)
            values["proposable"] = (await register(admin, values["playbook"]))["path"]
            if endpoint.path != "/api/proposals":
                applied = endpoint.path.endswith("/rollback")
                values["proposal"] = await _proposal(api, values["proposable"], applied=applied)
    headers = api.headers(endpoint.role) if endpoint.role else {}
    response = await _call(api, endpoint, values, headers)
    if endpoint.path in WITHOUT_INDEX:
        assert response.status_code == 503 and response.json()["code"] == "similar_unavailable", response.text
        return
    assert 200 <= response.status_code < 300, (response.status_code, response.text)


async def _proposal(api: Api, path: str, *, applied: bool) -> str:
    """A proposal by the operator's token (never the approver's own), approved by the admin when asked."""
    async with api.client("operator") as operator:
        response = await operator.post("/api/proposals", json={
            "target": {"path": path, "step": "a"}, "change": {"timeout_s": 5}, "rationale": "test"})
        assert response.status_code == 201, response.text
        proposal_id = str(response.json()["id"])
    if applied:
        async with api.client("admin") as admin:
            answer = await admin.post(f"/api/proposals/{proposal_id}/approve", json={"reason": "test"})
            assert answer.status_code == 200, answer.text
    return proposal_id


async def test_the_openapi_document_declares_the_bearer_scheme_and_problem_answers(api: Api) -> None:
    async with api.client("viewer") as viewer:
        document = (await viewer.get("/openapi.json")).json()
        docs = await viewer.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    problem = {"$ref": "#/components/schemas/Problem"}
    assert {"type", "title", "status", "detail", "code"} <= set(
        document["components"]["schemas"]["Problem"]["required"])
    operations = [(path, method, op) for path, item in document["paths"].items()
                  for method, op in item.items()]
    assert len(operations) == len(TABLE) - 1 + len(SIGNED)  # all but /docs
    for path, method, operation in operations:
        assert operation["responses"]["500"]["content"]["application/problem+json"]["schema"] == problem
        if path == "/health" or (method.upper(), path) in SIGNED:
            assert operation["security"] == []
            continue
        assert operation["security"] == [{"bearer": []}]
        for status in ("401", "403"):
            assert operation["responses"][status]["content"]["application/problem+json"]["schema"] == problem
