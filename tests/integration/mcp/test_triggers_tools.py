"""The trigger tools through the SDK's own client, over streamable HTTP and stdio, against a real control
plane: create, list, show, pause, resume and delete a trigger; a bad definition is a tool error naming it.
Nothing here waits for a firing (the trigger runner may not run in this harness)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.mcp.helpers import HELLO, call, fails, playbook, unique

pytestmark = pytest.mark.anyio

TRIGGER_TOOLS = {"trigger_list", "trigger_show", "trigger_create", "trigger_pause", "trigger_resume",
                 "trigger_delete"}


async def test_the_trigger_tools_are_listed_typed_and_only_list_and_show_are_read_only(connect: Any) -> None:
    async with connect("viewer") as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert TRIGGER_TOOLS <= set(tools)
    for name in TRIGGER_TOOLS:
        tool = tools[name]
        assert tool.description and tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (name in ("trigger_list", "trigger_show")), name
    assert tools["trigger_create"].input_schema["required"] == ["path"]
    assert tools["trigger_delete"].annotations.destructive_hint is True


async def test_an_operator_creates_lists_shows_pauses_resumes_and_deletes_an_interval_trigger(
        connect: Any) -> None:
    name = unique("trig")
    async with connect("operator") as session:
        await call(session, "register_playbook", content=playbook(name, HELLO, f"mcp/{name}"))
        created = await call(session, "trigger_create", path=f"mcp/{name}", every="1s", name="tick",
                             payload={"who": "trigger"}, concurrency="skip")
        trigger_id = created["id"]
        assert (created["kind"], created["path"], created["name"]) == ("interval", f"mcp/{name}", "tick")
        assert created["spec"]["every"] == "1s" and created["spec"]["payload"] == {"who": "trigger"}
        assert created["spec"]["concurrency"] == "skip" and "catchup" not in created["spec"]
        assert created["paused"] is False and created["source"] == "api" and len(created["next_at"]) >= 1
        assert created["secret"] is None and created["webhook_path"] is None

        listed = await call(session, "trigger_list", path=f"mcp/{name}")
        assert [(t["id"], t["kind"]) for t in listed["items"]] == [(trigger_id, "interval")]
        assert trigger_id in [t["id"] for t in (await call(session, "trigger_list"))["items"]]

        shown = await call(session, "trigger_show", trigger_id=trigger_id, limit=5)
        assert shown["id"] == trigger_id and shown["spec"]["every"] == "1s"
        assert isinstance(shown["firings"], list) and len(shown["firings"]) <= 5

        paused = await call(session, "trigger_pause", trigger_id=trigger_id)
        assert paused["paused"] is True and paused["next_at"] == []
        assert (await call(session, "trigger_show", trigger_id=trigger_id))["paused"] is True
        resumed = await call(session, "trigger_resume", trigger_id=trigger_id)
        assert resumed["paused"] is False and resumed["next_at"]

        assert await call(session, "trigger_delete", trigger_id=trigger_id) == {"id": trigger_id,
                                                                                 "deleted": True}
        assert (await call(session, "trigger_list", path=f"mcp/{name}"))["items"] == []
        gone = await fails(session, "trigger_show", trigger_id=trigger_id)
        assert gone.startswith("Error executing tool trigger_show: 404 "), gone


async def test_a_webhook_triggers_secret_is_in_the_create_answer_only(connect: Any) -> None:
    name = unique("hook")
    async with connect("operator") as session:
        await call(session, "register_playbook", content=playbook(name, HELLO))
        created = await call(session, "trigger_create", path=name, webhook=True)
        assert created["kind"] == "webhook" and created["secret"]
        assert created["webhook_path"] == f"/api/hooks/{created['id']}"
        shown = await call(session, "trigger_show", trigger_id=created["id"])
        assert "secret" not in shown and created["secret"] not in str(shown)
        await call(session, "trigger_delete", trigger_id=created["id"])


async def test_a_bad_cron_or_an_unknown_playbook_is_a_clear_tool_error_and_nothing_is_stored(
        connect: Any) -> None:
    name = unique("badcron")
    async with connect("operator") as session:
        await call(session, "register_playbook", content=playbook(name, HELLO))
        text = await fails(session, "trigger_create", path=name, cron="every tuesday at noon")
        assert text.startswith("Error executing tool trigger_create: 4"), text
        assert "cron" in text and "every tuesday at noon" in text, text
        both = await fails(session, "trigger_create", path=name, cron="* * * * *", every="5m")
        assert "exactly one of cron, every, after, subject, webhook" in both, both
        missing = await fails(session, "trigger_create", path=f"{name}/nowhere", every="5m")
        assert "404" in missing, missing
        assert (await call(session, "trigger_list", path=name))["items"] == []


async def test_a_viewer_lists_and_shows_triggers_but_cannot_create_pause_or_delete_them(connect: Any) -> None:
    name = unique("trigrole")
    async with connect("operator") as operator:
        await call(operator, "register_playbook", content=playbook(name, HELLO))
        trigger_id = (await call(operator, "trigger_create", path=name, cron="0 3 * * *", tz="UTC"))["id"]
    async with connect("viewer") as viewer:
        assert [t["id"] for t in (await call(viewer, "trigger_list", path=name))["items"]] == [trigger_id]
        assert (await call(viewer, "trigger_show", trigger_id=trigger_id))["kind"] == "cron"
        for tool, arguments in [("trigger_create", {"path": name, "every": "1h"}),
                                ("trigger_pause", {"trigger_id": trigger_id}),
                                ("trigger_resume", {"trigger_id": trigger_id}),
                                ("trigger_delete", {"trigger_id": trigger_id})]:
            text = await fails(viewer, tool, **arguments)
            assert f"Error executing tool {tool}: 403 forbidden: " in text, text
        shown = await call(viewer, "trigger_show", trigger_id=trigger_id)
        assert shown["paused"] is False
        assert [t["id"] for t in (await call(viewer, "trigger_list", path=name))["items"]] == [trigger_id]
    async with connect("operator") as operator:
        await call(operator, "trigger_delete", trigger_id=trigger_id)
