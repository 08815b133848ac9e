"""The chat with an LLM: the model plans calls over the chat's tools (agents/chat/tools.py), reads their
results and writes the answer, starting from what the rules already found.

The protocol is JSON in the message content, so that any OpenAI-compatible server works (tool calling is
not required): each reply is ONE object, either {"call": {"tool": NAME, "arguments": {...}}} or
{"answer": TEXT, "execution_id": ID|null, "references": [EVENT_ID, ...]}. At most MAX_ROUNDS calls; then,
or on an error, prose, or a wrong shape, the rules' answer stands with a note of why. Everything the model
reads is scrubbed with every credential value the process knows; references it cites that no tool result
showed are dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.chat.tools import ChatTools, catalog_text
from agents.diagnosis.scrub import scrub
from agents.llm_client import JsonChat, LlmSettings

log = logging.getLogger(__name__)

MAX_ROUNDS = 5
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)
_SYSTEM = """You answer questions about NoETL workflow executions for the engineers who run them, from
NoETL's event log, through tools. You are given the question, what the conversation pointed at so far, and
what NoETL's rules already found (a draft answer with its diagnosis). Check or extend it with tools when
the question needs more; then answer.

Reply with ONE JSON object and nothing else, either a tool call:
{"call": {"tool": "<name>", "arguments": {...}}}
or the final answer:
{"answer": "<plain sentences for an engineer: which run, what failed, why, what to do; cite events as
[event <id>]>", "execution_id": "<the execution the answer is about, or null>", "references": ["<event id>"]}

Tools:
{tools}

Rules: cite only event ids that a tool result or the draft showed. Never approve, reject or roll back a
change (people do that); you may propose one with propose_change when the asker asks for it. Never invent
secret values; write "..." instead."""
SYSTEM = _SYSTEM.replace("{tools}", catalog_text())


@dataclass
class Planned:
    answer: str
    execution_id: str | None
    references: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # the tools called, in order


class ChatPlanner:
    def __init__(self, settings: LlmSettings, *, secrets: Iterable[str] = (),
                 chat: JsonChat | None = None) -> None:
        self.settings = settings
        self.secrets = frozenset(s for s in secrets if isinstance(s, str) and s)
        if settings.api_key:
            self.secrets |= {settings.api_key}
        self._chat = chat or JsonChat(settings)

    async def close(self) -> None:
        await self._chat.close()

    async def plan(self, question: str, focus: dict[str, Any], draft: dict[str, Any],
                   tools: ChatTools) -> Planned | str:
        """The model's answer, or why there is none (the caller keeps the rules' answer then)."""
        tools.seen_events.update(draft.get("references") or [])
        if draft.get("diagnosis"):
            tools.seen_events.update(e["event_id"] for e in draft["diagnosis"].get("evidence") or [])
        context = scrub({"question": question, "conversation_points_at": focus, "draft": draft}, self.secrets)
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": json.dumps(context, indent=1, default=str)}]
        calls: list[str] = []
        for _ in range(MAX_ROUNDS + 1):
            try:
                text = await self._chat.ask(messages)
            except Exception as exc:  # the endpoint down, a timeout, a refusal: the rules' answer stands
                log.warning("chat: the LLM call failed (%s)", type(exc).__name__)
                return f"the LLM ({self.settings.model}) could not be asked: {type(exc).__name__}"
            reply = _parse(text)
            if isinstance(reply, str):
                return f"the LLM's reply was unusable ({reply})"
            messages.append({"role": "assistant", "content": json.dumps(reply)})
            if "answer" in reply:
                return _planned(reply, tools, calls)
            call = reply["call"]
            if len(calls) >= MAX_ROUNDS:
                return f"the LLM asked for more than {MAX_ROUNDS} tool calls"
            name = str(call.get("tool"))
            calls.append(name)
            result = await tools.call(name, call.get("arguments") or {})
            messages.append({"role": "user", "content": f"Result of {name}: "
                             + ChatTools.as_text(scrub(result, self.secrets))})
        return f"the LLM asked for more than {MAX_ROUNDS} tool calls"


def _parse(text: str) -> dict[str, Any] | str:
    body = _FENCE.sub("", (text or "").strip()).strip()
    if not body:
        return "empty"
    try:
        value = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(value, dict):
        return "not a JSON object"
    if isinstance(value.get("answer"), str) and value["answer"].strip():
        return value
    call = value.get("call")
    if isinstance(call, dict) and isinstance(call.get("tool"), str):
        return value
    return "neither an answer nor a tool call"


def _planned(reply: dict[str, Any], tools: ChatTools, calls: list[str]) -> Planned:
    cited = [r for r in reply.get("references") or [] if isinstance(r, str) and r in tools.seen_events]
    text = str(reply["answer"]).strip()
    for event_id in re.findall(r"\[event ([0-9a-f]{8,64})\]", text):  # a citation no tool showed goes
        if event_id not in tools.seen_events:
            text = text.replace(f" [event {event_id}]", "").replace(f"[event {event_id}]", "")
        elif event_id not in cited:
            cited.append(event_id)
    execution = reply.get("execution_id")
    return Planned(answer=text, execution_id=str(execution) if execution else None, references=cited,
                   calls=calls)
