"""The chat with an OpenAI-compatible LLM (a local server answering from a script): the model calls the
chat's tools with the asker's role, writes the answer from their results, may cite only events a tool
showed, and the rules' answer stands whenever the model cannot help."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from agents.chat.service import ChatService
from agents.diagnosis.service import DiagnosisService
from agents.llm_client import LlmSettings
from control_plane.services.catalog import CatalogService
from control_plane.services.chat import ConversationService
from control_plane.services.credentials import CredentialService
from control_plane.services.policies import PolicyService
from control_plane.services.secrets import SecretValues
from policies.model import Actor
from tests.harness.fake_llm import FakeLlm
from tests.integration.chat.conftest import ChatApi
from tests.integration.chat.test_chat_api import RESET, playbook, unique

pytestmark = pytest.mark.anyio

API_KEY = "sk-chat-test-key-do-not-leak"
OPERATOR = Actor(id="token:chat-llm-operator", name="chat llm operator")


def chat_with(api: ChatApi, llm: FakeLlm) -> ChatService:
    store, executions = api.stack.store, api.stack.executions
    assert store is not None and executions is not None
    diagnosis = DiagnosisService(executions, secrets=SecretValues(store))  # the rules' diagnosis
    return ChatService(executions, CatalogService(store), PolicyService(store), ConversationService(store),
                       diagnose=diagnosis.diagnose, secrets=SecretValues(store),
                       llm=LlmSettings(model="fake-chat", base_url=llm.url, api_key=API_KEY, timeout_s=10))


def call(tool: str, **arguments: Any) -> str:
    return json.dumps({"call": {"tool": tool, "arguments": arguments}})


async def failed_run(api: ChatApi) -> tuple[str, str]:
    name = unique("llm_feed")
    run = await api.run(playbook(name, RESET))
    assert run["status"] == "failed"
    return str(run["execution_id"]), f"chat/{name}"


async def test_the_llm_calls_tools_and_writes_the_answer_citing_only_events_a_tool_showed(
        chat_api: ChatApi) -> None:
    execution_id, _ = await failed_run(chat_api)
    assert chat_api.stack.store is not None
    events = await chat_api.stack.store.events.events(execution_id)
    real = next(e.event_id for e in events if e.type == "step.failed")
    invented = uuid.uuid4().hex
    final = json.dumps({"answer": f"The fetch failed on a reset connection [event {real}] "
                                  f"[event {invented}]; add a retry.", "execution_id": execution_id,
                        "references": [real, invented]})
    with FakeLlm([call("why_failed", execution_id=execution_id),
                  call("list_events", execution_id=execution_id), final]) as llm:
        reply = await chat_with(chat_api, llm).ask(f"why did {execution_id} fail?", None, actor=OPERATOR,
                                                   role="operator")
        sent = llm.recorded_text()
        bodies = [r["body"] for r in llm.requests]
    assert reply.answered_by == "rules+llm" and reply.tools == ["why_failed", "list_events"]
    assert reply.answer.startswith("The fetch failed on a reset connection") and invented not in reply.answer
    assert reply.references == [real] and reply.execution_id == execution_id
    assert reply.diagnosis is not None and reply.diagnosis["root_cause_type"] == "connection"
    assert len(bodies) == 3 and "Result of why_failed" in bodies[1]["messages"][-1]["content"]
    assert "propose_change" in bodies[0]["messages"][0]["content"]  # the tools are listed to the model
    assert "approve" not in [line.split(":")[0].strip("- ") for line in
                             bodies[0]["messages"][0]["content"].splitlines()]
    assert API_KEY not in "\n".join(json.dumps(b) for b in bodies) and sent  # only in the auth header


async def test_a_tool_the_asker_s_role_does_not_allow_is_refused_to_the_model_and_nothing_is_proposed(
        chat_api: ChatApi) -> None:
    execution_id, path = await failed_run(chat_api)
    final = json.dumps({"answer": "You cannot propose with a viewer token.", "execution_id": execution_id,
                        "references": []})
    change = {"retry": {"when": "{{ output.status == 'error' }}", "then": {"do": "retry", "attempts": 3}}}
    with FakeLlm([call("propose_change", path=path, step="fetch_orders", change=change, rationale="flaky"),
                  call("approve_proposal", proposal_id="x"), final]) as llm:
        reply = await chat_with(chat_api, llm).ask(f"why did {execution_id} fail? propose a retry", None,
                                                   actor=Actor(id="token:viewer-x", name="viewer x"),
                                                   role="viewer")
        results = [r["body"]["messages"][-1]["content"] for r in llm.requests[1:]]
    assert "forbidden: propose_change needs the operator role" in results[0]
    assert "no tool 'approve_proposal'" in results[1]
    assert reply.proposals == [] and reply.answered_by == "rules+llm"
    policies = PolicyService(chat_api.stack.store)  # type: ignore[arg-type]
    assert await policies.list(path=path) == []


async def test_when_the_llm_fails_the_rules_answer_stands_with_a_note(chat_api: ChatApi) -> None:
    execution_id, _ = await failed_run(chat_api)
    with FakeLlm([FakeLlm.status(500)]) as llm:
        reply = await chat_with(chat_api, llm).ask(f"why did {execution_id} fail?", None, actor=OPERATOR,
                                                   role="operator")
    assert reply.answered_by == "rules" and "connection error at step 'fetch_orders'" in reply.answer
    assert "Not refined by the LLM" in reply.answer and reply.references


async def test_prose_or_endless_tool_calls_from_the_llm_leave_the_rules_answer(chat_api: ChatApi) -> None:
    execution_id, _ = await failed_run(chat_api)
    with FakeLlm(["I think it failed because of the network."]) as llm:
        prose = await chat_with(chat_api, llm).ask(f"why did {execution_id} fail?", None, actor=OPERATOR,
                                                   role="operator")
    assert prose.answered_by == "rules" and "unusable (not JSON)" in prose.answer
    with FakeLlm([call("list_playbooks")]) as llm:
        endless = await chat_with(chat_api, llm).ask(f"why did {execution_id} fail?", None, actor=OPERATOR,
                                                     role="operator")
    assert endless.answered_by == "rules" and "more than 5 tool calls" in endless.answer


async def test_a_credential_value_never_reaches_the_model(chat_api: ChatApi) -> None:
    assert chat_api.stack.store is not None
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    await CredentialService(chat_api.stack.store).set(unique("chat_secret"), "http", {"token": secret}, None)
    name = unique("leaky")
    run = await chat_api.run(playbook(name, f"""\
workflow:
  - step: call_api
    tool:
      kind: python
      code: |
        raise ConnectionError("refused by https://api.example.com/?token={secret}")
"""))
    with FakeLlm([json.dumps({"answer": "It was refused.", "execution_id": run["execution_id"],
                              "references": []})]) as llm:
        await chat_with(chat_api, llm).ask(f"why did {run['execution_id']} fail?", None, actor=OPERATOR,
                                           role="operator")
        sent = llm.recorded_text()
    assert secret not in sent and "refused" in sent


async def test_the_llm_runs_what_the_mcp_server_offers_with_the_asker_s_role(chat_api: ChatApi) -> None:
    name = unique("llm_rerun")
    text = playbook(name, RESET)
    final = json.dumps({"answer": "Started it again.", "execution_id": None, "references": []})
    script = [call("validate_playbook", content=text), call("register_playbook", content=text),
              call("execute_playbook", path=f"chat/{name}"), final]
    with FakeLlm(script) as llm:
        reply = await chat_with(chat_api, llm).ask("run a fresh copy of the orders feed", None,
                                                   actor=OPERATOR, role="operator")
        results = [json.loads(r["body"]["messages"][-1]["content"].split(": ", 1)[1])
                   for r in llm.requests[1:]]
    assert reply.tools == ["validate_playbook", "register_playbook", "execute_playbook"]
    assert results[0]["result"]["valid"] is True and results[1]["result"]["registered"] is True
    started = results[2]["result"]["execution_id"]
    assert chat_api.stack.executions is not None
    assert (await chat_api.stack.executions.get(started)).playbook_path == f"chat/{name}"
    with FakeLlm([call("execute_playbook", path=f"chat/{name}"), final]) as llm:
        await chat_with(chat_api, llm).ask("run it again", None, actor=Actor(id="token:v", name="v"),
                                           role="viewer")
        refused = llm.requests[1]["body"]["messages"][-1]["content"]
    assert "forbidden: execute_playbook needs the operator role" in refused
