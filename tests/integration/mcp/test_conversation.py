"""A whole conversation of an assistant with NoETL through MCP: execute a failing playbook, ask why it
failed, find similar failures, propose a retry, and see the proposal pending approval (the assistant's
token cannot approve it). Also each insight tool on its own.

The insight tools call `GET /api/executions/{id}/diagnosis`, `GET /api/executions/{id}/similar` and
`GET /api/search` (docs/api.md); a test that needs one the server does not serve (or has not enabled) is
skipped, naming the route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness.polling import poll
from tests.integration.mcp.helpers import FAILING, McpApi, call, fails, playbook, unique

pytestmark = pytest.mark.anyio

DIAGNOSIS = "/api/executions/{id}/diagnosis"
SIMILAR = "/api/executions/{id}/similar"
SEARCH = "/api/search"



async def require(api: McpApi, *routes: str) -> None:
    """Skip unless the server serves these routes and has enabled them (503 when not)."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30,
                                 headers={"Authorization": f"Bearer {api.tokens['admin']}"}) as admin:
        paths = (await admin.get("/openapi.json")).json().get("paths", {})
        missing = [r for r in routes if r not in paths]
        if missing:
            pytest.skip(f"not served by the control plane yet: {', '.join(missing)} (docs/api.md)")
        for route in routes:
            answer = await admin.get(route.replace("{id}", "probe"), params={"q": "probe"})
            if answer.status_code == 503:
                pytest.skip(f"{route}: {answer.json().get('detail')} (not enabled by the entry point)")


async def failed_runs(session: Any, path: str, n: int) -> list[dict[str, Any]]:
    runs = [await call(session, "execute_playbook", path=path, wait=True, timeout_s=60) for _ in range(n)]
    assert [r["status"] for r in runs] == ["failed"] * n, runs
    return runs


async def test_execute_a_failing_playbook_ask_why_find_similar_propose_a_retry_and_see_it_pending(
        connect: Any, mcp_api: McpApi) -> None:
    await require(mcp_api, DIAGNOSIS, SIMILAR)
    name = unique("orders")
    async with connect("operator") as assistant:
        await call(assistant, "register_playbook", content=playbook(name, FAILING))
        first, second = await failed_runs(assistant, name, 2)
        assert "connection reset" in str(second["steps"]["fetch"]["error"])

        why = await call(assistant, "why_failed", execution_id=second["execution_id"])
        assert why["execution_id"] == second["execution_id"] and why["failed_step"] == "fetch"
        assert why["root_cause_step"] == "fetch" and why["root_cause_type"] == "connection"
        assert why["transience"] in ("transient", "intermittent") and why["summary"]
        assert why["evidence"] and all(e["fact"] for e in why["evidence"])

        async def similar() -> list[dict[str, Any]]:
            found = await call(assistant, "similar_failures", execution_id=second["execution_id"], limit=5)
            return [i for i in found["items"] if i["execution_id"] == first["execution_id"]]

        [match] = await poll(similar, timeout_s=90, what="the first failure to be indexed and found")
        assert match["step"] == "fetch" and match["playbook_path"] == name and match["score"] > 0.5

        retry = {"when": "{{ output.status == 'error' and output.error.kind == 'connection' }}",
                 "then": {"do": "retry", "attempts": 3, "backoff": "exponential", "delay": 1.0}}
        proposal = await call(assistant, "propose_change", path=name, step="fetch", change={"retry": retry},
                              rationale=f"{why['summary']} The same failure happened before "
                                        f"({first['execution_id']}): retry connection errors.",
                              diagnosis=why, transience=why["transience"],
                              evidence=[first["execution_id"], second["execution_id"]])
        assert proposal["state"] == "proposed" and proposal["author_name"] == "test-operator"
        assert proposal["change"]["retry"]["then"]["do"] == "retry"

        pending = await call(assistant, "list_proposals", state="proposed", path=name)
        assert [p["id"] for p in pending["items"]] == [proposal["id"]]
        assert "Unknown tool" in await fails(assistant, "approve_proposal", proposal_id=proposal["id"])
        async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30) as rest:
            own = await rest.post(f"/api/proposals/{proposal['id']}/approve", json={"reason": "looks right"},
                                  headers={"Authorization": f"Bearer {mcp_api.tokens['operator']}"})
            assert own.status_code == 403, own.text
        shown = await call(assistant, "get_proposal", proposal_id=proposal["id"])
        assert shown["state"] == "proposed"
        assert [t["to_state"] for t in shown["transitions"]] == ["proposed"]  # pending approval


async def test_why_failed_answers_the_diagnosis_and_the_diagnosis_resource_the_same(connect: Any,
                                                                                   mcp_api: McpApi) -> None:
    await require(mcp_api, DIAGNOSIS)
    name = unique("why")
    async with connect("viewer") as viewer, connect("operator") as operator:
        await call(operator, "register_playbook", content=playbook(name, FAILING))
        [run] = await failed_runs(operator, name, 1)
        why = await call(viewer, "why_failed", execution_id=run["execution_id"])
        assert why["failed_step"] == "fetch" and 0 <= why["confidence"] <= 1
        import json

        resource = await viewer.read_resource(f"execution://{run['execution_id']}/diagnosis")
        assert json.loads(resource.contents[0].text)["failed_step"] == "fetch"
        unknown = await fails(viewer, "why_failed", execution_id="no-such-execution")
        assert "404 not_found" in unknown


async def test_search_failures_finds_past_failures_by_text(connect: Any, mcp_api: McpApi) -> None:
    await require(mcp_api, SEARCH)
    name = unique("search")
    async with connect("operator") as session:
        await call(session, "register_playbook", content=playbook(name, FAILING))
        [run] = await failed_runs(session, name, 1)

        async def found() -> bool:
            page = await call(session, "search_failures", text="upstream orders service reset the connection",
                              limit=20)
            return any(i["execution_id"] == run["execution_id"] for i in page["items"])

        await poll(found, timeout_s=90, what="the failure to be indexed and found by text")
        assert "validation error" in (await fails(session, "search_failures", text=""))
