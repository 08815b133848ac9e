"""The optional LLM step of a diagnosis: any OpenAI-compatible chat endpoint (agents/llm_client.py)
refines the explanation and the fixes of the rule-based diagnosis.

The prompt is built only from the diagnosis and facts that are already scrubbed by the runtime, and is
scrubbed again here with every credential value the process knows (`secrets`), by key name and for
passwords inside URLs. The reply must be one JSON object that validates as `Refinement`; anything else
(an error, a timeout, prose, a wrong shape) keeps the rule-based diagnosis and adds an evidence gap.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from agents.diagnosis.data import payload_of
from agents.diagnosis.facts import Facts
from agents.diagnosis.model import FIX_KINDS, Diagnosis, Refinement
from agents.diagnosis.scrub import scrub
from agents.llm_client import NO_KEY, JsonChat, LlmSettings

__all__ = ["NO_KEY", "LlmRefiner", "LlmSettings", "digest", "parse"]
log = logging.getLogger(__name__)

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)
SYSTEM = f"""You explain why a NoETL workflow execution failed, for the engineer who has to fix it.
You receive a rule-based diagnosis (its root cause step, type and transience are decided; do not change
them) and the facts it was built from. Reply with ONE JSON object and nothing else:
{{"summary": "<2-4 plain sentences: what failed, why, and what to do>",
  "suggested_fixes": [{{"kind": "<one of {', '.join(FIX_KINDS)}>",
                        "description": "<one concrete sentence>",
                        "change": {{<a patch in the playbook's own keys, e.g. "step": "fetch",
                                    "set": {{"retry": {{"max_attempts": 5}}}}, or "command": "...">}}}}]}}
Keep the fixes concrete (a retry rule, a timeout, a credential to create, a query to correct, a pool to
use). Never invent values for secrets; write "..." instead."""


class LlmRefiner:
    """`await refiner.refine(diagnosis, facts)` -> the diagnosis with a refined summary and fixes."""

    def __init__(self, settings: LlmSettings, *, secrets: Iterable[str] = (),
                 client: Any = None) -> None:
        self.settings = settings
        self.secrets = frozenset(s for s in secrets if isinstance(s, str) and s)
        if settings.api_key:
            self.secrets |= {settings.api_key}
        self._chat = JsonChat(settings, client)

    @property
    def name(self) -> str:
        return self.settings.model

    def client(self) -> Any:  # openai.AsyncOpenAI
        return self._chat.client()

    async def close(self) -> None:
        await self._chat.close()

    def messages(self, diagnosis: Diagnosis, facts: Facts | None) -> list[dict[str, str]]:
        """The chat messages: only scrubbed data, scrubbed again with every known secret."""
        context = scrub({"diagnosis": diagnosis.model_dump(mode="json", exclude={"similar_failures"}),
                         "similar_failures": [s.model_dump(mode="json") for s in diagnosis.similar_failures],
                         "facts": digest(diagnosis, facts)}, self.secrets)
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": json.dumps(context, indent=1, default=str)}]

    async def refine(self, diagnosis: Diagnosis, facts: Facts | None = None) -> Diagnosis:
        try:
            text = await self._ask(self.messages(diagnosis, facts))
        except Exception as exc:  # the endpoint down, a timeout, a refusal: the rules' answer stands
            log.warning("diagnosis: the LLM call failed (%s)", type(exc).__name__)
            return _with_gap(diagnosis, f"the LLM ({self.settings.model}) could not be asked: "
                                        f"{type(exc).__name__}; the diagnosis is the rules' alone")
        refinement = parse(text)
        if isinstance(refinement, str):
            return _with_gap(diagnosis, f"the LLM answer was unusable ({refinement}); the diagnosis is the "
                                        "rules' alone")
        update: dict[str, Any] = {"summary": refinement.summary, "explained_by": "rules+llm"}
        if refinement.suggested_fixes:
            update["suggested_fixes"] = list(refinement.suggested_fixes)
        return diagnosis.model_copy(update=update)

    async def _ask(self, messages: list[dict[str, str]]) -> str:
        return await self._chat.ask(messages)


def parse(text: str) -> Refinement | str:
    """The reply as a Refinement, or why it is not one."""
    body = _FENCE.sub("", (text or "").strip()).strip()
    if not body:
        return "it was empty"
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at character {exc.pos}"
    try:
        return Refinement.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(document)"
        return f"{exc.error_count()} problem(s), first at {where}: {first.get('msg')}"


def _with_gap(diagnosis: Diagnosis, gap: str) -> Diagnosis:
    return diagnosis.model_copy(update={"evidence_gaps": [*diagnosis.evidence_gaps, gap]})


def digest(diagnosis: Diagnosis, facts: Facts | None) -> dict[str, Any]:
    """The facts an explanation needs: the failed and root-cause steps' definitions, errors and outputs."""
    if facts is None:
        return {}
    out: dict[str, Any] = {"status": facts.status, "playbook_path": facts.path, "steps": {}}
    wanted = [n for n in (diagnosis.failed_step, diagnosis.root_cause_step) if n]
    for name in dict.fromkeys(wanted):
        step = facts.steps.get(name)
        if step is None:
            continue
        entry: dict[str, Any] = {"status": step.status, "attempts": step.attempts, "retries": step.retries,
                                 "definition": step.definition}
        if step.error is not None:
            entry["error"] = {"kind": step.error.kind, "type": step.error.type,
                              "message": step.error.message[:2000],
                              "traceback_tail": (step.error.traceback or "")[-1500:]}
        if step.status == "succeeded":
            entry["output_preview"] = json.dumps(payload_of(step.result), default=str)[:1500]
        out["steps"][name] = entry
    return out
