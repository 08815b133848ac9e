"""Role boundaries through MCP: the API enforces each caller's token (there is no other way in), the HTTP
mount refuses requests without a known token, and a proposal made through MCP waits for another person."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.integration.mcp.conftest import REPO
from tests.integration.mcp.helpers import (
    HELLO,
    McpApi,
    call,
    fails,
    http_session,
    playbook,
    stdio_session,
    unique,
)

pytestmark = pytest.mark.anyio

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_a_viewer_reads_everything_but_cannot_register_execute_cancel_or_propose(connect: Any) -> None:
    name = unique("roles")
    async with connect("operator") as operator:
        await call(operator, "register_playbook", content=playbook(name, HELLO))
        run = await call(operator, "execute_playbook", path=name, wait=True)
    async with connect("viewer") as viewer:
        assert [i["path"] for i in (await call(viewer, "list_playbooks", prefix=name))["items"]] == [name]
        assert (await call(viewer, "get_playbook", path=name))["version"] == 1
        execution = await call(viewer, "get_execution", execution_id=run["execution_id"])
        assert execution["status"] == "completed"
        assert (await call(viewer, "list_events", execution_id=run["execution_id"]))["items"]
        assert (await call(viewer, "explain_playbook", path=name))["entry"] == "greet"
        assert (await call(viewer, "validate_playbook", content=playbook(name, HELLO)))["valid"] is True
        assert isinstance((await call(viewer, "list_proposals"))["items"], list)
        for tool, arguments in [
                ("register_playbook", {"content": playbook(name, HELLO)}),
                ("execute_playbook", {"path": name}),
                ("cancel_execution", {"execution_id": run["execution_id"]}),
                ("propose_change", {"path": name, "step": "greet", "change": {"timeout_s": 30},
                                    "rationale": "give it more time"})]:
            text = await fails(viewer, tool, **arguments)
            assert f"Error executing tool {tool}: 403 forbidden: " in text, text
            assert "has role 'viewer'; this needs 'operator'" in text
        assert (await call(viewer, "list_playbooks", prefix=name))["total"] == 1  # nothing was registered
        listed = await call(viewer, "list_executions", path=name)
        assert [i["execution_id"] for i in listed["items"]] == [run["execution_id"]]  # nothing was started


async def test_a_proposal_made_through_mcp_is_pending_and_its_author_cannot_approve_it(
        connect: Any, mcp_api: McpApi) -> None:
    name = unique("four_eyes")
    async with connect("approver") as session:  # an approver, even: still not for its own proposal
        await call(session, "register_playbook", content=playbook(name, HELLO))
        proposal = await call(session, "propose_change", path=name, step="greet", change={"timeout_s": 120},
                              rationale="the greeting service is slow on Mondays")
        assert proposal["state"] == "proposed" and proposal["target"] == {"path": name, "step": "greet"}
        assert proposal["change"] == {"timeout_s": 120.0} and proposal["author_name"] == "test-approver"
        pending = await call(session, "list_proposals", state="proposed", path=name)
        assert [p["id"] for p in pending["items"]] == [proposal["id"]]

        async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30) as rest:
            own = await rest.post(f"/api/proposals/{proposal['id']}/approve", json={"reason": "mine"},
                                  headers={"Authorization": f"Bearer {mcp_api.tokens['approver']}"})
            assert own.status_code == 403, own.text
            assert (await call(session, "get_proposal", proposal_id=proposal["id"]))["state"] == "proposed"

            again = await fails(session, "propose_change", path=name, step="greet", change={"timeout_s": 90},
                                rationale="another one")
            assert "409 guardrail_refused" in again and "open proposal" in again  # the guardrails' words

            other = await rest.post(f"/api/proposals/{proposal['id']}/approve", json={"reason": "agreed"},
                                    headers={"Authorization": f"Bearer {mcp_api.tokens['admin']}"})
            assert other.status_code == 200, other.text
        decided = await call(session, "get_proposal", proposal_id=proposal["id"])
        assert decided["state"] == "applied"
        assert [t["to_state"] for t in decided["transitions"]] == ["proposed", "approved", "applied"]

        rollback = await call(session, "propose_rollback", proposal_id=proposal["id"],
                              rationale="Mondays are fine again")
        assert rollback["kind"] == "rollback" and rollback["rollback_of"] == proposal["id"]
        assert rollback["state"] == "proposed" and rollback["target"] == {"path": name, "step": "greet"}
        assert "404 not_found" in await fails(session, "propose_rollback", proposal_id="no-such-proposal",
                                              rationale="undo")


async def test_the_http_mount_answers_401_without_a_known_token(mcp_api: McpApi) -> None:
    async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30) as raw:
        for headers in ({}, {"Authorization": "Bearer noetl_not-a-token"}, {"Authorization": "Basic abc"}):
            response = await raw.post("/mcp", json=INIT, headers={**MCP_HEADERS, **headers})
            assert response.status_code == 401, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")
            doc = response.json()
            assert doc["code"] == "unauthorized" and doc["where"] == "Authorization header" and doc["fix"]
        viewer = {"Authorization": f"Bearer {mcp_api.tokens['viewer']}"}
        ok = await raw.post("/mcp", json=INIT, headers={**MCP_HEADERS, **viewer})
        assert ok.status_code == 200, ok.text
    with pytest.raises(BaseExceptionGroup) as refused:  # the SDK's client cannot even initialize
        async with http_session(mcp_api.url, "noetl_not-a-token"):
            pass
    assert refused.group_contains(MCPError, depth=None), refused.value


async def test_a_revoked_token_is_refused_at_the_next_call(mcp_api: McpApi) -> None:
    async with httpx.AsyncClient(base_url=mcp_api.url, timeout=30,
                                 headers={"Authorization": f"Bearer {mcp_api.tokens['admin']}"}) as admin:
        created = (await admin.post("/api/tokens", json={"name": unique("brief"), "role": "viewer"})).json()
        async with http_session(mcp_api.url, created["token"]) as session:
            assert isinstance((await call(session, "list_playbooks"))["items"], list)
            assert (await admin.delete(f"/api/tokens/{created['id']}")).status_code == 204
            with pytest.raises(MCPError):  # the mount refuses the revoked token (401)
                await session.call_tool("list_playbooks", {})


async def test_stdio_with_an_unknown_token_answers_401_tool_errors_and_goes_on(mcp_api: McpApi) -> None:
    env = {"NOETL_SERVER_URL": mcp_api.url, "NOETL_TOKEN": "noetl_not-a-token",
           "NOETL_HOME": str(mcp_api.home), "PYTHONPATH": str(REPO)}
    async with stdio_session(sys.executable, ["-m", "noetl.cli", "mcp"], env, cwd=REPO) as session:
        for _ in range(2):
            text = await fails(session, "list_playbooks")
            assert "401 unauthorized" in text
        assert (await call(session, "validate_playbook", content=playbook("local", HELLO)))["valid"] is True


def test_noetl_mcp_needs_a_server_and_a_token(tmp_path: Any) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("NOETL_SERVER_URL", "NOETL_TOKEN")}
    base.update(NOETL_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    no_server = subprocess.run([sys.executable, "-m", "noetl.cli", "mcp"], env=base, capture_output=True,
                               text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=REPO)
    assert no_server.returncode == 3 and "NOETL_SERVER_URL" in no_server.stderr
    no_token = subprocess.run([sys.executable, "-m", "noetl.cli", "mcp"],
                              env={**base, "NOETL_SERVER_URL": "http://127.0.0.1:9"}, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=REPO)
    assert no_token.returncode == 3 and "NOETL_TOKEN is not set" in no_token.stderr
