"""Executing playbooks through the API: state per step, listing with filters and cursors, event pages,
the live event stream (and resuming it), cancelling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from control_plane.api.executions import event_stream
from engine.protocol.events import Event
from engine.protocol.ids import new_execution_id
from tests.harness.playbooks import held_until
from tests.integration.api.helpers import (
    Api,
    assert_problem,
    execute,
    playbook,
    poll,
    register,
    unique,
    wait_ended,
)

pytestmark = pytest.mark.anyio

TWO_STEPS = """\
workload: {who: world}
workflow:
  - step: greet
    tool:
      kind: python
      input: {who: "{{ workload.who }}"}
      code: |
        result = {"greeting": "hello " + who}
    next: {arcs: [{step: done}]}
  - step: done
    tool: {kind: noop}
"""


@pytest.fixture(scope="module")
async def two_steps(api: Api) -> AsyncIterator[str]:
    name = unique("two")
    async with api.client("operator") as operator:
        await register(operator, playbook(name, TWO_STEPS))
    yield name


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of a text/event-stream answer: {"id", "event", "data"} (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                yield {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


async def test_an_execution_runs_to_completed_with_the_state_of_each_step(
        api: Api, two_steps: str) -> None:
    async with api.client("operator") as operator:
        started = await operator.post("/api/execute", json={"path": two_steps, "payload": {"who": "api"}})
        assert started.status_code == 201, started.text
        doc = started.json()
        assert doc["path"] == two_steps and doc["version"] == 1 and doc["status"] in ("pending", "running")
        execution = await wait_ended(operator, doc["execution_id"])
    assert execution["status"] == "completed"
    assert execution["error"] is None and execution["payload"] == {"who": "api"}
    assert execution["steps"]["greet"]["status"] == "succeeded"
    assert execution["steps"]["greet"]["result"] == {"greeting": "hello api"}
    assert execution["steps"]["done"]["status"] == "succeeded"
    assert execution["last_seq"] >= 4 and execution["parent_execution_id"] is None


async def test_a_failing_step_ends_the_execution_failed_with_its_error(admin: httpx.AsyncClient) -> None:
    name = unique("fails")
    await register(admin, playbook(name, """\
        workflow:
          - step: boom
            tool: {kind: python, code: "raise ValueError('no luck')"}
        """))
    execution = await wait_ended(admin, await execute(admin, name))
    assert execution["status"] == "failed"
    assert execution["steps"]["boom"]["status"] == "failed"
    assert execution["steps"]["boom"]["error"]["kind"] == "python_exception"
    assert "no luck" in execution["steps"]["boom"]["error"]["message"]


async def test_merge_false_is_refused_with_400_and_merge_true_is_accepted(
        admin: httpx.AsyncClient, two_steps: str) -> None:
    doc = assert_problem(await admin.post("/api/execute", json={"path": two_steps, "merge": False}), 400)
    assert "merge" in doc["detail"]
    execution = await wait_ended(admin, await execute(admin, two_steps, merge=True))
    assert execution["status"] == "completed"


async def test_a_start_sent_again_under_the_client_chosen_id_starts_the_execution_once(
        admin: httpx.AsyncClient, two_steps: str) -> None:
    chosen = new_execution_id()
    body = {"path": two_steps, "payload": {"who": "twice"}, "execution_id": chosen}
    first, again = [await admin.post("/api/execute", json=body) for _ in range(2)]
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert first.json()["execution_id"] == again.json()["execution_id"] == chosen
    execution = await wait_ended(admin, chosen)
    assert execution["status"] == "completed" and execution["payload"] == {"who": "twice"}
    events = (await admin.get(f"/api/executions/{chosen}/events", params={"limit": 1000})).json()["items"]
    assert [e["type"] for e in events].count("execution.started") == 1


@pytest.mark.parametrize("chosen", ["123", "0241043291894150228", "9999999999999999999", "abc"])
async def test_a_client_chosen_id_that_is_not_an_execution_id_is_answered_422(
        admin: httpx.AsyncClient, two_steps: str, chosen: str) -> None:
    response = await admin.post("/api/execute", json={"path": two_steps, "execution_id": chosen})
    assert response.status_code == 422, response.text


async def test_executing_an_unknown_path_or_version_is_answered_404(
        admin: httpx.AsyncClient, two_steps: str) -> None:
    assert_problem(await admin.post("/api/execute", json={"path": "no/such"}), 404, "not_found")
    assert_problem(await admin.post("/api/execute", json={"path": two_steps, "version": 99}), 404)


async def test_the_list_filters_by_path_status_time_and_parent_and_pages_with_a_cursor(
        admin: httpx.AsyncClient) -> None:
    name = unique("listed")
    await register(admin, playbook(name, "workflow:\n  - {step: a, tool: {kind: noop}}\n"))
    before = datetime.now(UTC) - timedelta(seconds=1)
    ids = [await execute(admin, name) for _ in range(5)]
    for execution_id in ids:
        await wait_ended(admin, execution_id)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"path": name, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await admin.get("/api/executions", params=params)).json()
        pages += 1
        assert len(page["items"]) <= 2
        seen += [item["execution_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, each once

    completed = (await admin.get("/api/executions", params={"path": name, "status": "completed"})).json()
    assert {i["execution_id"] for i in completed["items"]} == set(ids)
    failed = (await admin.get("/api/executions", params={"path": name, "status": "failed,cancelled"})).json()
    assert failed["items"] == []
    after = datetime.now(UTC) + timedelta(seconds=1)
    window = await admin.get("/api/executions", params={"path": name, "since": before.isoformat(),
                                                        "until": after.isoformat()})
    assert len(window.json()["items"]) == 5
    later = await admin.get("/api/executions", params={"path": name, "since": after.isoformat()})
    assert later.json()["items"] == []
    orphans = await admin.get("/api/executions", params={"path": name, "parent": ids[0]})
    assert orphans.json() == {"items": [], "next_cursor": None}


async def test_events_come_in_pages_that_chain_through_next_after_seq(
        admin: httpx.AsyncClient, two_steps: str) -> None:
    execution_id = await execute(admin, two_steps)
    execution = await wait_ended(admin, execution_id)
    whole = (await admin.get(f"/api/executions/{execution_id}/events", params={"limit": 1000})).json()
    assert [e["seq"] for e in whole["items"]] == list(range(1, execution["last_seq"] + 1))
    assert whole["next_after_seq"] is None
    assert whole["items"][0]["type"] == "execution.started"
    assert whole["items"][-1]["type"] == "execution.completed"

    paged: list[dict[str, Any]] = []
    after = 0
    while after is not None:
        page = (await admin.get(f"/api/executions/{execution_id}/events",
                                params={"after_seq": after, "limit": 3})).json()
        assert len(page["items"]) <= 3
        paged += page["items"]
        after = page["next_after_seq"]
    assert paged == whole["items"]


async def test_the_stream_yields_every_event_in_order_and_ends_after_the_terminal_one(
        api: Api, two_steps: str) -> None:
    async with api.client("operator") as operator:
        execution_id = await execute(operator, two_steps)
    async with api.client("viewer") as viewer:
        async with viewer.stream("GET", f"/api/executions/{execution_id}/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            streamed = [event async for event in sse_events(response)]
        stored = (await viewer.get(f"/api/executions/{execution_id}/events", params={"limit": 1000})).json()
    assert [e["id"] for e in streamed] == list(range(1, len(streamed) + 1))
    assert [e["event"] for e in streamed] == [e["data"]["type"] for e in streamed]
    assert streamed[-1]["event"] == "execution.completed"
    assert [e["data"] for e in streamed] == stored["items"]


async def test_the_stream_resumes_after_last_event_id_or_after_seq(admin: httpx.AsyncClient,
                                                                   two_steps: str) -> None:
    execution_id = await execute(admin, two_steps)
    last_seq = (await wait_ended(admin, execution_id))["last_seq"]
    url = f"/api/executions/{execution_id}/stream"
    async with admin.stream("GET", url, headers={"Last-Event-ID": "2"}) as response:
        resumed = [e["id"] async for e in sse_events(response)]
    assert resumed == list(range(3, last_seq + 1))
    async with admin.stream("GET", url, params={"after_seq": last_seq - 1}) as response:
        tail = [e async for e in sse_events(response)]
    assert [e["id"] for e in tail] == [last_seq] and tail[0]["event"] == "execution.completed"
    bad = await admin.get(url, headers={"Last-Event-ID": "seven"})
    assert_problem(bad, 400, "invalid_argument")


async def test_streams_of_unknown_executions_are_answered_404_before_streaming(
        admin: httpx.AsyncClient) -> None:
    assert_problem(await admin.get("/api/executions/nope/stream"), 404, "not_found")


async def test_the_stream_sends_a_keepalive_comment_while_idle_then_the_events() -> None:
    gate = asyncio.Event()

    async def follow() -> AsyncIterator[Event]:
        await gate.wait()
        for seq, kind in ((1, "execution.started"), (2, "execution.completed")):
            yield Event(event_id=str(seq), idempotency_key=str(seq), execution_id="x", type=kind, seq=seq)

    chunks: list[bytes] = []
    stream = event_stream(follow(), stopping=asyncio.Event(), keepalive_s=0.05)
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.startswith(b":") and chunks.count(b": keepalive\n\n") >= 2:
            gate.set()
    assert chunks[:2] == [b": keepalive\n\n"] * 2
    events = [c for c in chunks if not c.startswith(b":")]
    assert [c.split(b"\n")[:2] for c in events] == [[b"id: 1", b"event: execution.started"],
                                                    [b"id: 2", b"event: execution.completed"]]


async def test_cancelling_a_running_execution_ends_it_cancelled_and_cancelling_again_is_409(
        api: Api) -> None:
    release = api.stack.config.home / f"{unique('release')}"
    name = unique("cancel")
    async with api.client("operator") as operator:
        await register(operator, playbook(name, held_until(release)))
        execution_id = await execute(operator, name)

        async def running() -> bool:
            doc = (await operator.get(f"/api/executions/{execution_id}")).json()
            return doc["steps"].get("wait", {}).get("status") == "running"

        await poll(running, what="the step to run")
        response = await operator.post(f"/api/executions/{execution_id}/cancel")
        assert response.status_code == 202
        assert response.json() == {"execution_id": execution_id, "status": "cancelling"}
        execution = await wait_ended(operator, execution_id)
        assert execution["status"] == "cancelled"
        assert execution["steps"]["wait"]["error"]["kind"] == "cancelled"
        again = await operator.post(f"/api/executions/{execution_id}/cancel")
        doc = assert_problem(again, 409, "conflict")
        assert "already ended" in doc["detail"]
    release.write_text("go")


async def test_unknown_execution_ids_are_answered_404(admin: httpx.AsyncClient) -> None:
    for method, url in (("GET", "/api/executions/0123abc"), ("GET", "/api/executions/0123abc/events"),
                        ("POST", "/api/executions/0123abc/cancel")):
        doc = assert_problem(await admin.request(method, url), 404, "not_found")
        assert "0123abc" in doc["detail"]
