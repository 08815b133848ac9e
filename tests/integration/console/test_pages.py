"""The console's pages: executions (filtered, with live statuses), one execution (graph, timeline, events,
diagnosis), and the proposals queue, whose decisions only approvers see and the service still enforces."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape

import pytest

from tests.harness.playbooks import held_until
from tests.integration.api.helpers import Api, execute, playbook, register, unique, wait_ended
from tests.integration.console.helpers import (
    csrf_of,
    failed_execution,
    proposal,
    proposal_state,
    signed_in,
)

pytestmark = pytest.mark.anyio
STREAM_TIMEOUT_S = 30.0


async def test_the_executions_list_filters_by_status_and_playbook_path(api: Api) -> None:
    path, failed = await failed_execution(api)
    other = unique("console_ok")
    async with api.client("admin") as admin:
        await register(admin, playbook(other, "workflow:\n  - {step: a, tool: {kind: noop}}\n"))
        completed = await execute(admin, other)
        await wait_ended(admin, completed)
    async with signed_in(api, "viewer") as client:
        failures = (await client.get("/ui/executions", params={"status": "failed"})).text
        by_path = (await client.get("/ui/executions", params={"path": other})).text
        bad = await client.get("/ui/executions", params={"status": "exploded"})
    assert f'data-execution-id="{failed}"' in failures and f'data-execution-id="{completed}"' not in failures
    assert f'data-execution-id="{completed}"' in by_path and f'data-execution-id="{failed}"' not in by_path
    assert bad.status_code == 400 and "unknown execution status" in unescape(bad.text)


async def test_an_execution_page_shows_its_graph_timeline_events_and_diagnosis(api: Api) -> None:
    _, execution_id = await failed_execution(api)
    async with api.client("viewer") as reader:
        diagnosis = (await reader.get(f"/api/executions/{execution_id}/diagnosis")).json()
        events = (await reader.get(f"/api/executions/{execution_id}/events", params={"limit": 1000})).json()
    async with signed_in(api, "viewer") as client:
        response = await client.get(f"/ui/executions/{execution_id}")
    assert response.status_code == 200
    html = unescape(response.text)
    assert diagnosis["summary"] and diagnosis["summary"] in html
    assert diagnosis["failed_step"] == "divide" and "ZeroDivisionError" in html
    # the graph: every step with its state, the arcs between them
    assert re.search(r'class="node node-succeeded">\s*<title>start: succeeded</title>', html)
    assert re.search(r'class="node node-failed">\s*<title>divide: failed</title>', html)
    assert re.search(r'class="node node-not-run">\s*<title>report: not run</title>', html)
    assert "<title>start → divide</title>" in html and "<title>divide → report</title>" in html
    # the timeline: a bar per step that ran, failed in red
    assert re.search(r'class="bar bar-failed">\s*<title>divide: failed', html)
    # the events table: one row per stored event
    assert html.count('<tr id="event-') >= len(events["items"])
    assert all(f'<tr id="event-{e["event_id"]}"' in html for e in events["items"])  # chat citations land
    for event in events["items"]:
        assert f"<td>{event['type']}</td>" in html
    assert "similar-failure search is not enabled" in html  # no indexer in this server


async def test_an_unknown_execution_is_a_404_page(api: Api) -> None:
    async with signed_in(api, "viewer") as client:
        response = await client.get("/ui/executions/123456789")
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]


async def test_the_live_list_sends_an_executions_status_as_it_changes(api: Api) -> None:
    name = unique("console_live")
    release = api.stack.config.home / f"{name}.release"
    async with api.client("admin") as admin:
        await register(admin, playbook(name, held_until(release)))
        execution_id = await execute(admin, name)
    seen: list[str] = []
    async with signed_in(api, "viewer") as client:

        async def follow() -> None:
            async with client.stream("GET", "/ui/executions/live", params={"path": name}) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                kind = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "execution":
                        item = json.loads(line[6:])
                        if item["execution_id"] == execution_id:
                            seen.append(item["status"])
                            if item["ended_at"] is None:  # seen while held: let it finish now
                                release.write_text("go")
                            if item["ended_at"] is not None:
                                return

        try:
            await asyncio.wait_for(follow(), STREAM_TIMEOUT_S)
        finally:
            release.write_text("go")  # never leave the step held
    assert seen[0] in ("pending", "running") and seen[-1] == "completed"


async def test_an_approver_sees_and_uses_the_decisions_of_someone_elses_proposal(api: Api) -> None:
    _, proposal_id = await proposal(api, "operator")
    async with signed_in(api, "approver") as client:
        page = (await client.get("/ui/proposals")).text
        assert f'action="/ui/proposals/{proposal_id}/approve"' in page
        assert f'action="/ui/proposals/{proposal_id}/reject"' in page
        assert '"timeout_s": 7' in unescape(page) and 'class="diff-added"' in page
        response = await client.post(f"/ui/proposals/{proposal_id}/approve",
                                     data={"csrf": csrf_of(page), "reason": "bounded is better"})
        assert response.status_code == 303
        done = await client.get(response.headers["location"])
    assert f"Proposal {proposal_id} approved." in done.text
    assert await proposal_state(api, proposal_id) == "applied"
    assert f'action="/ui/proposals/{proposal_id}/rollback"' in done.text  # applied: it may be rolled back


async def test_an_operator_sees_no_decisions_and_is_refused_when_posting_one(api: Api) -> None:
    _, proposal_id = await proposal(api, "admin")
    async with signed_in(api, "operator") as client:
        page = (await client.get("/ui/proposals")).text
        assert f'id="p-{proposal_id}"' in page
        assert "/approve" not in page and "/reject" not in page and "/rollback" not in page
        csrf = csrf_of(page)  # the sign-out form's: the session's token
        response = await client.post(f"/ui/proposals/{proposal_id}/approve", data={"csrf": csrf})
    assert response.status_code == 403
    assert "has role 'operator'; this needs 'approver'" in unescape(response.text)
    assert await proposal_state(api, proposal_id) == "proposed"


async def test_an_approver_cannot_approve_their_own_proposal(api: Api) -> None:
    _, proposal_id = await proposal(api, "approver")
    async with signed_in(api, "approver") as client:
        page = (await client.get("/ui/proposals")).text
        assert f'action="/ui/proposals/{proposal_id}/approve"' not in page
        assert "You proposed this change" in page
        response = await client.post(f"/ui/proposals/{proposal_id}/approve", data={"csrf": csrf_of(page)})
    assert response.status_code == 403 and "text/html" in response.headers["content-type"]
    assert await proposal_state(api, proposal_id) == "proposed"


async def test_a_decision_without_the_csrf_token_changes_nothing(api: Api) -> None:
    _, proposal_id = await proposal(api, "operator")
    async with signed_in(api, "approver") as client:
        response = await client.post(f"/ui/proposals/{proposal_id}/reject", data={"reason": "forged"})
    assert response.status_code == 403
    assert await proposal_state(api, proposal_id) == "proposed"


LOOP = """\
workflow:
  - step: square
    loop: {in: "{{ [1, 2, 3] }}", iterator: x, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, code: "result = x * x"}
    next: {arcs: [{step: total, when: "{{ event.name == 'loop.done' }}"}]}
  - step: total
    tool: {kind: python, input: {xs: "{{ square }}"}, code: "result = sum(xs)"}
"""


async def test_a_loops_items_each_get_a_bar_under_their_step_on_the_timeline(api: Api) -> None:
    name = unique("console_loop")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, LOOP))
        execution_id = await execute(admin, name)
        assert (await wait_ended(admin, execution_id))["status"] == "completed"
    async with signed_in(api, "viewer") as client:
        html = unescape((await client.get(f"/ui/executions/{execution_id}")).text)
    for index in range(3):
        assert re.search(rf'class="bar bar-succeeded">\s*<title>square \[{index}\]: succeeded', html), index
    assert re.search(r'class="bar bar-succeeded">\s*<title>square: succeeded', html)
    assert re.search(r'class="bar bar-succeeded">\s*<title>total: succeeded', html)
    assert "<title>square → total (when …)</title>" in html
