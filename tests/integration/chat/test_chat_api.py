"""POST /api/chat: questions in plain words, resolved without an LLM, answered from the diagnosis, similar
failures and proposals, citing events of the log; conversations kept per token."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

import pytest

from tests.harness.polling import poll
from tests.integration.chat.conftest import ChatApi

pytestmark = pytest.mark.anyio

RESET = """\
workflow:
  - step: fetch_orders
    tool:
      kind: python
      code: |
        raise ConnectionError("connection reset by the upstream orders service (peer closed the socket)")
"""
DIVIDE = """\
workflow:
  - step: normalize
    tool: {kind: python, code: "result = 1 / 0"}
"""
HELLO = """\
workflow:
  - step: greet
    tool: {kind: python, code: "result = 'hello'"}
"""


def playbook(name: str, body: str) -> str:
    return (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: chat/{name}}}\n"
            + textwrap.dedent(body))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def event_ids(api: ChatApi, execution_id: str) -> set[str]:
    assert api.stack.store is not None
    return {e.event_id for e in await api.stack.store.events.events(execution_id)}


async def test_asking_why_an_execution_failed_by_its_id_names_the_root_cause_and_cites_its_events(
        chat_api: ChatApi) -> None:
    name = unique("divide")
    run = await chat_api.run(playbook(name, DIVIDE))
    assert run["status"] == "failed"
    reply = await chat_api.ask("viewer", f"why did {run['execution_id']} fail?")
    assert reply["execution_id"] == run["execution_id"] and reply["playbook_path"] == f"chat/{name}"
    assert reply["diagnosis"]["root_cause_type"] == "python_exception"
    assert reply["diagnosis"]["root_cause_step"] == "normalize"
    assert "python_exception" in reply["answer"] and "normalize" in reply["answer"]
    assert reply["references"] and set(reply["references"]) <= await event_ids(chat_api, run["execution_id"])
    assert all(f"[event {ref}]" in reply["answer"] for ref in reply["references"])


async def test_the_last_run_of_a_playbook_named_in_words_is_the_newest_failed_one(chat_api: ChatApi) -> None:
    name = unique("orders_sync")
    runs = [await chat_api.run(playbook(name, RESET)) for _ in range(2)]
    words = name.replace("_", " ")
    reply = await chat_api.ask("viewer", f"why did the last run of {words} fail?")
    assert reply["execution_id"] == runs[-1]["execution_id"]
    assert reply["diagnosis"]["root_cause_type"] == "connection"


async def test_follow_ups_in_one_conversation_keep_to_the_same_execution_and_an_operator_can_propose(
        chat_api: ChatApi) -> None:
    name = unique("orders_feed")
    run = await chat_api.run(playbook(name, RESET))
    first = await chat_api.ask("operator", f"what went wrong in {run['execution_id']}?")
    conversation = first["conversation_id"]
    transient = await chat_api.ask("operator", "is it transient?", conversation)
    assert transient["execution_id"] == run["execution_id"] and transient["intent"] == "transient"
    assert transient["diagnosis"]["transience"] in ("transient", "intermittent")
    assert "retry" in transient["answer"]
    change = await chat_api.ask("operator", "what should I change?", conversation)
    assert change["execution_id"] == run["execution_id"] and change["intent"] == "fix"
    assert "propose that" in change["answer"]
    proposed = await chat_api.ask("operator", "propose that retry", conversation)
    [proposal] = proposed["proposals"]
    assert proposal["state"] == "proposed" and proposal["target"] == {"path": f"chat/{name}",
                                                                       "step": "fetch_orders"}
    assert proposal["change"]["retry"] and proposal["author_name"] == "test-operator"
    decided = await chat_api.ask("operator", "approve it", conversation)
    assert "never approve" in decided["answer"]
    async with chat_api.client("viewer") as client:
        stored = (await client.get(f"/api/proposals/{proposal['id']}")).json()
    assert stored["state"] == "proposed"  # the chat never decides


async def test_a_viewer_asking_for_a_proposal_is_told_its_role_may_not_and_nothing_is_proposed(
        chat_api: ChatApi) -> None:
    name = unique("viewer_feed")
    run = await chat_api.run(playbook(name, RESET))
    first = await chat_api.ask("viewer", f"why did {run['execution_id']} fail?")
    reply = await chat_api.ask("viewer", "propose that retry", first["conversation_id"])
    assert "Your role (viewer) may not propose" in reply["answer"] and reply["proposals"] == []
    async with chat_api.client("viewer") as client:
        listed = (await client.get("/api/proposals", params={"path": f"chat/{name}"})).json()
    assert listed["items"] == []


async def test_what_failed_most_recently_resolves_the_newest_failure_of_any_playbook(
        chat_api: ChatApi) -> None:
    await chat_api.run(playbook(unique("hello"), HELLO))
    failed = await chat_api.run(playbook(unique("divide"), DIVIDE))
    await chat_api.run(playbook(unique("hello"), HELLO))
    reply = await chat_api.ask("viewer", "what failed most recently?")
    assert reply["execution_id"] == failed["execution_id"]
    assert reply["diagnosis"]["root_cause_type"] == "python_exception"


async def test_a_question_about_yesterday_with_no_runs_then_says_so(chat_api: ChatApi) -> None:
    reply = await chat_api.ask("viewer", "which runs failed yesterday?")
    assert reply["intent"] == "list" and reply["execution_id"] is None
    assert "No failed runs yesterday." in reply["answer"]


async def test_similar_ones_come_from_the_embeddings_index_with_what_happened_next(chat_api: ChatApi) -> None:
    name = unique("ledger_feed")
    first = await chat_api.run(playbook(name, RESET))
    second = await chat_api.run(playbook(name, RESET))

    async def similar_found() -> dict[str, Any] | None:
        reply = await chat_api.ask("viewer", f"show failures similar to {second['execution_id']}")
        return reply if any(s["execution_id"] == first["execution_id"] for s in reply["similar"]) else None

    reply = await poll(similar_found, timeout_s=120, what="the first run among the similar failures")
    assert reply["intent"] == "similar" and first["execution_id"] in reply["answer"]


async def test_an_unknown_execution_id_is_answered_in_words_not_as_an_error(chat_api: ChatApi) -> None:
    reply = await chat_api.ask("viewer", "why did 9999999999999999999 fail?")
    assert reply["execution_id"] is None and "no execution 9999999999999999999" in reply["answer"].lower()


async def test_a_conversation_is_stored_and_only_its_owner_reads_or_continues_it(chat_api: ChatApi) -> None:
    run = await chat_api.run(playbook(unique("divide"), DIVIDE))
    first = await chat_api.ask("operator", f"why did {run['execution_id']} fail?")
    await chat_api.ask("operator", "is it transient?", first["conversation_id"])
    async with chat_api.client("operator") as client:
        history = (await client.get(f"/api/chat/{first['conversation_id']}")).json()
    assert [t["question"] for t in history["turns"]] == [f"why did {run['execution_id']} fail?",
                                                         "is it transient?"]
    assert history["turns"][1]["answer"]["execution_id"] == run["execution_id"]
    async with chat_api.client("viewer") as other:
        assert (await other.get(f"/api/chat/{first['conversation_id']}")).status_code == 404
        answer = await other.post("/api/chat", json={"message": "is it transient?",
                                                     "conversation_id": first["conversation_id"]})
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith("application/problem+json")


async def test_an_empty_or_oversized_message_is_refused_with_422(chat_api: ChatApi) -> None:
    async with chat_api.client("viewer") as client:
        assert (await client.post("/api/chat", json={"message": ""})).status_code == 422
        assert (await client.post("/api/chat", json={"message": "x" * 5000})).status_code == 422
        assert (await client.post("/api/chat", json={"question": "why?"})).status_code == 422
