"""Every tool, resource and prompt through the SDK's own client, over streamable HTTP at /mcp and over
stdio (`noetl mcp`), against a real control plane: typed inputs, structured outputs, and errors that are
tool errors carrying the API's own problem while the session goes on."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.harness.playbooks import held_until
from tests.harness.polling import poll
from tests.integration.mcp.helpers import (
    FAILING,
    HELLO,
    LOOPING,
    McpApi,
    call,
    fails,
    playbook,
    unique,
)

pytestmark = pytest.mark.anyio

TOOLS = {
    "list_playbooks", "get_playbook", "validate_playbook", "register_playbook", "execute_playbook",
    "get_execution", "list_executions", "list_events", "cancel_execution", "why_failed", "similar_failures",
    "search_failures", "list_proposals", "get_proposal", "propose_change", "propose_rollback",
    "explain_playbook", "plan_playbook", "insights", "trigger_list", "trigger_show", "trigger_create",
    "trigger_pause", "trigger_resume", "trigger_delete",
}
WRITING = {"register_playbook", "execute_playbook", "cancel_execution", "propose_change", "propose_rollback",
           "trigger_create", "trigger_pause", "trigger_resume", "trigger_delete"}
TEMPLATES = {"playbooks://catalog{?prefix}", "playbook://{+path}{?version}", "playbook-versions://{+path}",
             "execution://{execution_id}", "execution://{execution_id}/events",
             "execution://{execution_id}/diagnosis"}


async def test_the_server_lists_every_tool_typed_with_structured_output_resources_prompts(
        connect: Any) -> None:
    async with connect("viewer") as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        for name, tool in tools.items():
            assert tool.description, name
            assert tool.input_schema["type"] == "object", name
            assert tool.output_schema is not None and tool.output_schema["type"] == "object", name
            assert tool.annotations is not None and tool.annotations.read_only_hint is (name not in WRITING)
        assert tools["execute_playbook"].input_schema["required"] == ["path"]
        required = set(tools["propose_change"].input_schema["required"])
        assert required == {"path", "step", "change", "rationale"}
        assert tools["cancel_execution"].annotations.destructive_hint is True
        templates = {t.uri_template for t in (await session.list_resource_templates()).resource_templates}
        assert templates == TEMPLATES
        prompts = {p.name: p for p in (await session.list_prompts()).prompts}
        assert set(prompts) == {"diagnose_execution", "draft_playbook"}
        assert [a.name for a in prompts["diagnose_execution"].arguments or []] == ["execution_id"]


async def test_catalog_tools_register_list_search_get_and_validate(connect: Any) -> None:
    name = unique("hello")
    async with connect("operator") as session:
        first = await call(session, "register_playbook", content=playbook(name, HELLO, f"mcp/{name}"))
        assert first == {"path": f"mcp/{name}", "version": 1, "warnings": [], "triggers": []}
        second = await call(session, "register_playbook", content=playbook(name, HELLO, f"mcp/{name}"))
        assert second["version"] == 2

        listed = await call(session, "list_playbooks", prefix=f"mcp/{name}")
        assert [(i["path"], i["version"], i["name"]) for i in listed["items"]] == [(f"mcp/{name}", 2, name)]
        assert listed["total"] == 1
        found = await call(session, "list_playbooks", query=name.upper())  # words, case-insensitive
        assert [i["path"] for i in found["items"]] == [f"mcp/{name}"]
        assert (await call(session, "list_playbooks", query=f"{name} nothing-like-it"))["items"] == []

        doc = await call(session, "get_playbook", path=f"mcp/{name}")
        assert doc["version"] == 2 and doc["versions"] == [1, 2] and f"name: {name}" in doc["content"]
        assert (await call(session, "get_playbook", path=f"mcp/{name}", version=1))["version"] == 1

        report = await call(session, "validate_playbook", content=playbook(name, HELLO))
        assert report["valid"] is True and report["errors"] == []
        assert report["steps"] == ["greet", "shout", "done"] and report["path"] == name
        broken = playbook(name, HELLO.replace("next: done\n", "next: nowhere\n"))
        report = await call(session, "validate_playbook", content=broken)
        assert report["valid"] is False and report["steps"] == []
        [error] = report["errors"]
        assert error["line"] > 0 and error["column"] > 0 and "nowhere" in error["message"]

        refused = await fails(session, "register_playbook", content=broken)
        assert refused.startswith("Error executing tool register_playbook: 422 ")
        assert f"line {error['line']}, column {error['column']}" in refused and "nowhere" in refused


async def test_execution_tools_execute_wait_status_list_events_and_cancel(connect: Any,
                                                                          mcp_api: McpApi) -> None:
    name = unique("run")
    async with connect("operator") as session:
        await call(session, "register_playbook", content=playbook(name, HELLO))
        started = await call(session, "execute_playbook", path=name, payload={"who": "MCP"})
        assert started["status"] in ("pending", "running") and started["ended"] is False
        assert started["waited"] is False
        execution_id = started["execution_id"]

        async def ended() -> dict[str, Any] | None:
            doc = await call(session, "get_execution", execution_id=execution_id)
            return doc if doc["ended"] else None

        doc = await poll(ended, what="the execution to end")
        assert doc["status"] == "completed" and doc["steps"]["shout"]["result"] == "HELLO, MCP"
        as_number = await call(session, "get_execution", execution_id=int(execution_id))  # ids are int64
        assert as_number["execution_id"] == execution_id and as_number["status"] == "completed"

        waited = await call(session, "execute_playbook", path=name, wait=True, timeout_s=60)
        assert waited["waited"] is True and waited["timed_out"] is False and waited["ended"] is True
        assert waited["status"] == "completed"
        assert waited["steps"]["greet"]["result"] == {"greeting": "Hello, NoETL"}

        page = await call(session, "list_executions", path=name, limit=1)
        assert [i["execution_id"] for i in page["items"]] == [waited["execution_id"]]  # newest first
        rest = await call(session, "list_executions", path=name, cursor=page["next_cursor"])
        assert [i["execution_id"] for i in rest["items"]] == [execution_id]
        assert (await call(session, "list_executions", path=name, status="failed"))["items"] == []

        events: list[dict[str, Any]] = []
        after: int | None = 0
        while after is not None:
            batch = await call(session, "list_events", execution_id=execution_id, after_seq=after, limit=4)
            assert len(batch["items"]) <= 4
            events.extend(batch["items"])
            after = batch["next_after_seq"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["type"] == "execution.started" and events[-1]["type"] == "execution.completed"

        release = mcp_api.home / unique("release")
        slow = unique("slow")
        await call(session, "register_playbook", content=playbook(slow, held_until(release)))
        running = await call(session, "execute_playbook", path=slow, wait=True, timeout_s=0.5)
        assert running["timed_out"] is True and running["ended"] is False
        try:
            cancelling = await call(session, "cancel_execution", execution_id=running["execution_id"])
            assert cancelling == {"execution_id": running["execution_id"], "status": "cancelling"}

            async def cancelled() -> bool:
                doc = await call(session, "get_execution", execution_id=running["execution_id"])
                return doc["status"] == "cancelled"

            await poll(cancelled, what="the execution to be cancelled")
        finally:
            release.touch()
        again = await fails(session, "cancel_execution", execution_id=running["execution_id"])
        assert "409 " in again


async def test_explain_describes_steps_arcs_joins_and_loops_and_plan_schedules_them(connect: Any) -> None:
    name = unique("loops")
    async with connect("operator") as session:
        text = playbook(name, LOOPING)
        explained = await call(session, "explain_playbook", content=text)
        assert explained["name"] == name and explained["entry"] == "fan"
        steps = {s["name"]: s for s in explained["steps"]}
        assert list(steps) == ["fan", "left", "again", "end"]
        assert steps["fan"]["tools"] == ["python"] and steps["fan"]["next"] == ["left"]
        assert steps["left"]["is_join"] is True and explained["joins"] == ["left"]
        [loop] = explained["loops"]
        assert loop == {"step": "fan", "items": "{{ workload.regions }}", "iterator": "region",
                        "mode": "parallel", "max_in_flight": 2}
        arcs = {(a["source"], a["target"]): a for a in explained["arcs"]}
        assert arcs[("left", "again")]["when"] == "{{ false }}" and arcs[("left", "end")]["when"] is None
        assert arcs[("again", "left")]["back_edge"] is True and arcs[("fan", "left")]["back_edge"] is False
        assert "loop(s): fan (parallel)" in explained["summary"] and "cycle(s)" in explained["summary"]

        await call(session, "register_playbook", content=text)
        assert (await call(session, "explain_playbook", path=name))["steps"] == explained["steps"]

        planned = await call(session, "plan_playbook", path=name, max_solve_s=1)
        assert planned["status"] in ("OPTIMAL", "FEASIBLE", "GREEDY") and planned["pools"] == ["default"]
        assert planned["makespan_ms"] >= planned["lower_bound_ms"] > 0
        assert {t["step"] for t in planned["steps"]} >= {"fan", "left", "end"}
        assert sum(t["step"] == "fan" for t in planned["steps"]) == 3  # the loop's items are known

        neither = await fails(session, "explain_playbook")
        assert "exactly one of `content`" in neither
        broken = await fails(session, "explain_playbook",
                             content=text.replace("next: left\n", "next: nope\n"))
        assert "does not validate" in broken and "line " in broken and "nope" in broken
        missing = await fails(session, "plan_playbook", path=unique("absent"))
        assert "404 not_found" in missing


async def test_resources_read_playbooks_and_executions_and_prompts_render(connect: Any) -> None:
    name = unique("res")
    path = f"res/{name}"
    async with connect("operator") as session:
        await call(session, "register_playbook", content=playbook(name, HELLO, path))
        await call(session, "register_playbook", content=playbook(name, HELLO.replace("NoETL", "v2"), path))
        latest = (await session.read_resource(f"playbook://{path}")).contents[0]
        assert latest.mime_type == "application/yaml" and "who: v2" in latest.text
        first = (await session.read_resource(f"playbook://{path}?version=1")).contents[0]
        assert "who: NoETL" in first.text
        versions = (await session.read_resource(f"playbook-versions://{path}")).contents[0]
        assert [v["version"] for v in json_of(versions.text)["items"]] == [1, 2]
        catalog = json_of((await session.read_resource("playbooks://catalog?prefix=res/")).contents[0].text)
        assert path in [i["path"] for i in catalog["items"]]

        run = await call(session, "execute_playbook", path=path, wait=True)
        execution = json_of((await session.read_resource(f"execution://{run['execution_id']}")).contents[0].text)
        assert execution["status"] == "completed" and set(execution["steps"]) == {"greet", "shout", "done"}
        events = json_of((await session.read_resource(f"execution://{run['execution_id']}/events")).contents[0].text)
        assert events["truncated"] is False and events["items"][-1]["type"] == "execution.completed"

        with pytest.raises(MCPError, match="404 not_found"):
            await session.read_resource(f"playbook://{path}/absent")
        with pytest.raises(MCPError, match="404 not_found"):
            await session.read_resource("execution://no-such-execution")
        with pytest.raises(MCPError, match="not a number"):
            await session.read_resource(f"playbook://{path}?version=latest")

        prompt = await session.get_prompt("diagnose_execution", {"execution_id": run["execution_id"]})
        text = prompt.messages[0].content.text
        assert run["execution_id"] in text and "why_failed" in text and "propose_change" in text
        draft = await session.get_prompt("draft_playbook", {"goal": "load orders into duckdb"})
        assert "load orders into duckdb" in draft.messages[0].content.text
        assert "validate_playbook" in draft.messages[0].content.text
        still = await call(session, "get_execution", execution_id=run["execution_id"])
        assert still["status"] == "completed"


async def test_unknown_ids_and_bad_arguments_are_tool_errors_and_the_session_goes_on(connect: Any) -> None:
    async with connect("admin") as session:
        for tool, arguments in [("get_execution", {"execution_id": "no-such-id"}),
                                ("list_events", {"execution_id": "no-such-id"}),
                                ("cancel_execution", {"execution_id": "no-such-id"}),
                                ("get_proposal", {"proposal_id": "no-such-id"}),
                                ("get_playbook", {"path": "no/such/playbook"}),
                                ("execute_playbook", {"path": "no/such/playbook"})]:
            text = await fails(session, tool, **arguments)
            assert text.startswith(f"Error executing tool {tool}: 404 not_found: "), text
            assert "\nwhere: " in text and "\nfix: " in text  # the API's problem, whole
        for tool, arguments, expected in [
                ("get_execution", {}, "execution_id"),  # missing
                ("list_events", {"execution_id": "x", "limit": 0}, "limit"),  # out of range
                ("list_events", {"execution_id": "x", "after_seq": "soon"}, "after_seq"),  # wrong type
                ("execute_playbook", {"path": "x", "payload": [1, 2]}, "payload"),
                ("propose_change", {"path": "x", "step": "s", "change": {}, "rationale": "r"}, "change"),
                ("propose_change", {"path": "x", "step": "s", "change": {"colour": "red"}, "rationale": "r"},
                 "colour"),
                ("plan_playbook", {"content": "x", "max_solve_s": 999}, "max_solve_s")]:
            text = await fails(session, tool, **arguments)
            assert expected in text, text
        assert "Unknown tool" in await fails(session, "approve_proposal", proposal_id="x")
        payload = await fails(session, "execute_playbook", path=unique("absent"), payload={"a": 1})
        assert "404" in payload
        assert (await call(session, "list_playbooks", limit=1))["total"] >= 0  # still answering


async def test_a_failed_execution_reads_as_failed_with_its_error(connect: Any) -> None:
    name = unique("fails")
    async with connect("operator") as session:
        await call(session, "register_playbook", content=playbook(name, FAILING))
        run = await call(session, "execute_playbook", path=name, wait=True)
        assert run["status"] == "failed" and run["steps"]["fetch"]["status"] == "failed"
        assert "connection reset" in str(run["steps"]["fetch"]["error"])


def json_of(text: str) -> Any:
    import json

    return json.loads(text)
