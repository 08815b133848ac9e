"""The command line as a client of the REST API (NOETL_SERVER_URL + NOETL_TOKEN), against the session's
dev stack, which serves the API on a free port (its `api_url` is in NOETL_HOME/dev.json). Tokens are
bootstrapped the way an operator does it on the server's machine: `noetl token create` without a URL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from control_plane.client import ClientError, NoetlClient
from tests.e2e.helpers import Noetl
from tests.harness.playbooks import held_until
from tests.harness.polling import wait_for

POLL_S = 60.0  # the longest any bounded poll of these tests waits

HELLO = """\
workload: {n: 3}
workflow:
  - step: start
    tool: {kind: python, input: {n: "{{ workload.n }}"}, code: "result = n * 2"}
    next: {arcs: [{step: double}]}
  - step: double
    tool: {kind: python, input: {x: "{{ start }}"}, code: "result = {'twice': x * 2}"}
"""
INVALID = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: broken, path: e2e/broken_client}
workflow:
  - step: start
    tool: {kind: python, code: "result = 1"}
    next: {arcs: [{step: scroe}]}
  - step: score
    tool: {kind: noop}
"""


@dataclass(frozen=True)
class Api:
    """The session stack's API and tokens of each role, bootstrapped with `noetl token create`."""

    cli: Noetl
    url: str
    tokens: dict[str, str]

    def as_role(self, role: str) -> Noetl:
        """The command line in client mode with a token of `role`."""
        return self.with_env(NOETL_SERVER_URL=self.url, NOETL_TOKEN=self.tokens[role])

    def with_env(self, **env: str) -> Noetl:
        return replace(self.cli, env={**self.cli.env, **env})


def token_of(cli: Noetl, role: str) -> dict[str, Any]:
    result = cli("token", "create", "--role", role, "--name", f"e2e-{role}-{uuid.uuid4().hex[:6]}", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def api(e2e_stack: Noetl) -> Api:
    state = json.loads((e2e_stack.home / "dev.json").read_text())
    assert state["api_url"].startswith("http://127.0.0.1:"), state
    roles = ("viewer", "operator", "admin")
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:  # three CLI start-ups at once
        created = list(pool.map(lambda role: token_of(e2e_stack, role), roles))
    return Api(e2e_stack, state["api_url"], {doc["role"]: doc["token"] for doc in created})


def register(cli: Noetl, text: str) -> dict[str, Any]:
    result = cli("register", str(cli.write(text)), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def status_of(cli: Noetl, execution_id: str) -> tuple[int, dict[str, Any]]:
    result = cli("status", execution_id, "--json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


# ---------------------------------------------------------------------- tokens
def test_token_create_without_a_server_url_bootstraps_a_token_that_is_shown_once(api: Api) -> None:
    created = token_of(api.cli, "operator")
    assert created["role"] == "operator" and created["token"].startswith("noetl_")
    assert len(created["token"]) == len("noetl_") + 43
    listed = api.cli("token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert created["id"] in [item["id"] for item in items]
    assert created["token"] not in listed.stdout


def test_tokens_are_created_listed_and_revoked_through_the_api_with_an_admin_token(api: Api) -> None:
    admin = api.as_role("admin")
    created = admin("token", "create", "--role", "viewer", "--name", "e2e-through-api", "--json")
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    listed = admin("token", "list", "--json")
    assert doc["id"] in [item["id"] for item in json.loads(listed.stdout)]
    assert admin("token", "revoke", doc["id"]).returncode == 0
    revoked = api.with_env(NOETL_SERVER_URL=api.url, NOETL_TOKEN=doc["token"])("catalog", "list")
    assert revoked.returncode == 3 and "401" in revoked.stderr, revoked.stderr


def test_dev_up_prints_a_fresh_admin_token_for_the_api_and_dev_status_shows_the_api_url(api: Api) -> None:
    up = api.cli("dev", "up")  # the stack already runs: it is reported, with a new admin token
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    assert doc["api_url"] == api.url and doc["admin_token"].startswith("noetl_")
    listed = api.with_env(NOETL_SERVER_URL=api.url, NOETL_TOKEN=doc["admin_token"])("token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "dev-up" in [item["name"] for item in json.loads(listed.stdout)]
    status = api.cli("dev", "status", "--json")
    assert json.loads(status.stdout)["api_url"] == api.url


# ---------------------------------------------------------------------- catalog
def test_a_valid_playbook_registers_through_the_api_and_its_version_is_printed(
        api: Api, playbook: Callable[..., str]) -> None:
    operator = api.as_role("operator")
    text = playbook(HELLO)
    first = operator("register", str(operator.write(text)))
    second = operator("register", str(operator.write(text)))
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    path = text.split("path: ")[1].split("}")[0]
    assert first.stdout.strip() == f"registered {path} version 1"
    assert second.stdout.strip() == f"registered {path} version 2"


def test_an_invalid_playbook_prints_its_located_errors_through_the_api_and_exits_two(api: Api) -> None:
    operator = api.as_role("operator")
    file = operator.write(INVALID)
    result = operator("register", str(file))
    assert result.returncode == 2, result.stderr
    assert f"{file}:7:" in result.stderr and "did you mean 'score'?" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_catalog_list_json_through_the_api_shows_the_registered_playbook(
        api: Api, playbook: Callable[..., str]) -> None:
    operator = api.as_role("operator")
    registered = register(operator, playbook(HELLO))
    listed = api.as_role("viewer")("catalog", "list", "--json", "--prefix", registered["path"])
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [(i["path"], i["version"]) for i in items] == [(registered["path"], registered["version"])]


# ---------------------------------------------------------------------- executions
def test_execute_playbook_wait_json_completes_with_the_step_results_and_status_and_events_agree(
        api: Api, playbook: Callable[..., str]) -> None:
    operator = api.as_role("operator")
    registered = register(operator, playbook(HELLO))
    result = operator("execute", "playbook", registered["path"], "--payload", '{"n": 5}', "--wait", "--json",
                      "--timeout", "60")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "completed"
    assert doc["steps"]["start"]["result"] == 10
    assert doc["steps"]["double"]["result"] == {"twice": 20}
    execution_id = doc["execution_id"]  # a positive 64-bit integer's digits (spec 13)
    assert len(execution_id) == 19 and execution_id.isdigit() and int(execution_id) < 2**63

    viewer = api.as_role("viewer")
    code, status = status_of(viewer, doc["execution_id"])
    assert (code, status["status"], status["execution_id"]) == (0, "completed", execution_id)
    assert status["steps"]["double"]["result"] == {"twice": 20}
    events = viewer("events", doc["execution_id"], "--json")
    assert events.returncode == 0, events.stderr
    items = json.loads(events.stdout)
    assert items[0]["type"] == "execution.started" and items[-1]["type"] == "execution.completed"
    assert [e["seq"] for e in items] == sorted(e["seq"] for e in items)
    assert {e["execution_id"] for e in items} == {execution_id}


def test_a_failing_execution_waited_on_through_the_api_exits_one(
        api: Api, playbook: Callable[..., str]) -> None:
    operator = api.as_role("operator")
    registered = register(operator, playbook("""\
        workflow:
          - step: boom
            tool: {kind: python, code: "raise ValueError('no')"}
        """))
    result = operator("execute", "playbook", registered["path"], "--wait", "--json", "--timeout", "60")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["status"] == "failed"


def test_cancel_through_the_api_ends_a_running_execution_as_cancelled(
        api: Api, playbook: Callable[..., str], tmp_path: Path) -> None:
    flag = tmp_path / "release"
    operator = api.as_role("operator")
    registered = register(operator, playbook(held_until(flag, step="hold", deadline_s=120)))
    try:
        started = operator("execute", "playbook", registered["path"], "--json")
        assert started.returncode == 0, started.stderr
        execution_id = json.loads(started.stdout)["execution_id"]
        wait_for(lambda: status_of(operator, execution_id)[1]["steps"].get("hold", {}).get("status")
                 == "running", timeout_s=POLL_S, what="the step starting")
        cancelled = operator("cancel", execution_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"execution {execution_id} cancelling"
        code, status = wait_for(lambda: (s := status_of(operator, execution_id))[1]["status"] != "running"
                                and s, timeout_s=POLL_S, what="the execution ending")
        assert (code, status["status"]) == (1, "cancelled"), status
        again = operator("cancel", execution_id)
        assert again.returncode == 2 and "409" in again.stderr, again.stderr
    finally:
        flag.touch()


def test_a_viewer_token_cannot_execute_and_the_cli_says_403_in_one_line(
        api: Api, playbook: Callable[..., str]) -> None:
    registered = register(api.as_role("operator"), playbook(HELLO))
    result = api.as_role("viewer")("execute", "playbook", registered["path"])
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "403" in lines[0] and "viewer" in lines[0] and "operator" in lines[0], lines


def test_an_unknown_execution_through_the_api_is_refused_with_404_and_exit_two(api: Api) -> None:
    for unknown in ("no-such-execution", str(2**63 - 1)):
        result = api.as_role("viewer")("status", unknown)
        assert result.returncode == 2 and "404" in result.stderr, result.stderr


def test_a_wrong_server_url_is_one_line_naming_it_and_exit_three(api: Api) -> None:
    result = api.with_env(NOETL_SERVER_URL="http://127.0.0.1:1", NOETL_TOKEN=api.tokens["viewer"])(
        "catalog", "list")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "http://127.0.0.1:1" in lines[0] and "NOETL_SERVER_URL" in lines[0]
    assert "noetl server start" in lines[0]
    assert api.tokens["viewer"] not in result.stderr


def test_client_mode_without_a_token_says_how_to_get_one_and_exits_three(api: Api) -> None:
    env = {k: v for k, v in api.cli.env.items() if k != "NOETL_TOKEN"}
    result = replace(api.cli, env={**env, "NOETL_SERVER_URL": api.url})("catalog", "list")
    assert result.returncode == 3 and "NOETL_TOKEN" in result.stderr and "token create" in result.stderr


# ---------------------------------------------------------------------- the client library itself
def test_the_client_streams_an_executions_events_to_its_terminal_event_and_resumes_after_a_seq(
        api: Api, playbook: Callable[..., str]) -> None:
    text = playbook(HELLO)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        async with NoetlClient(api.url, api.tokens["operator"]) as client:
            registered = await client.register(text)
            started = await client.execute(registered["path"], payload={"n": 1})
            streamed = [e async for e in client.stream(started["execution_id"])]
            resumed = [e async for e in client.stream(started["execution_id"], after_seq=streamed[1]["seq"])]
            stored = await client.all_events(started["execution_id"])
            return streamed, resumed, stored

    streamed, resumed, stored = asyncio.run(asyncio.wait_for(scenario(), POLL_S))
    assert streamed[-1]["type"] == "execution.completed"
    assert [e["seq"] for e in streamed] == [e["seq"] for e in stored]
    assert resumed == streamed[2:]


def test_the_client_raises_a_client_error_with_the_located_errors_of_an_invalid_playbook(api: Api) -> None:
    token = api.tokens["operator"]

    async def scenario() -> tuple[ClientError, str]:
        async with NoetlClient(api.url, token) as client:
            with pytest.raises(ClientError) as caught:
                await client.register(INVALID)
            return caught.value, repr(client)

    error, shown = asyncio.run(scenario())
    assert (error.status, error.code) == (422, "playbook_invalid"), error
    assert any(e.get("line") == 7 and "scroe" in e.get("message", "") for e in error.errors), error.errors
    assert token not in str(error) and token not in shown


def test_credentials_are_set_by_an_admin_and_listed_to_a_viewer_through_the_api_without_values(
        api: Api) -> None:
    name = f"e2e_cred_{uuid.uuid4().hex[:8]}"
    data = json.dumps({"token": "s3cr3t-value"})
    refused = api.as_role("operator")("credential", "set", name, "--type", "bearer", "--data", data)
    assert refused.returncode == 3 and "403" in refused.stderr, refused.stderr
    stored = api.as_role("admin")("credential", "set", name, "--type", "bearer", "--data", data)
    assert stored.returncode == 0, stored.stderr
    listed = api.as_role("viewer")("credential", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert name in [row["name"] for row in json.loads(listed.stdout)]
    assert "s3cr3t-value" not in listed.stdout
    assert api.as_role("admin")("credential", "delete", name).returncode == 0
