"""Diagnosing real failed executions of a real stack: the rules, the history of runs, similar failures,
and the LLM path against a scripted OpenAI-compatible server (tests/harness/fake_llm.py)."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from agents.diagnosis.graph import diagnose
from agents.diagnosis.llm import LlmRefiner, LlmSettings
from agents.diagnosis.service import DiagnosisService
from control_plane.errors import NotFoundError
from control_plane.services.secrets import SecretValues
from control_plane.stack import Stack
from tests.harness.fake_llm import FakeLlm

pytestmark = pytest.mark.anyio

UPSTREAM_EMPTY = """\
workflow:
  - step: fetch_orders
    tool: {kind: python, code: "result = []"}
    next: latest
  - step: latest
    tool:
      kind: python
      input: {orders: "{{ fetch_orders }}"}
      code: "result = orders[-1]['id']"
"""


async def register(stack: Stack, body: str) -> str:
    assert stack.executions is not None
    name = f"diag_{uuid.uuid4().hex[:8]}"
    text = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}}}\n" + textwrap.dedent(body)
    return (await stack.executions.register(text)).path


async def run(stack: Stack, path: str, payload: dict[str, Any] | None = None) -> str:
    assert stack.executions is not None
    execution_id = await stack.executions.start(path, payload=payload)
    await stack.executions.wait(execution_id, timeout_s=60)
    return execution_id


async def test_a_failed_execution_is_diagnosed_from_its_events(stack: Stack) -> None:
    assert stack.executions is not None
    execution_id = await run(stack, await register(stack, UPSTREAM_EMPTY))
    d = await diagnose(execution_id, executions=stack.executions)
    assert (d.status, d.failed_step, d.root_cause_step, d.root_cause_type, d.transience) == \
        ("failed", "latest", "fetch_orders", "validation", "permanent")
    assert 0 < d.confidence <= 1 and "fetch_orders" in d.summary
    event_ids = {e.event_id for e in await stack.executions.events(execution_id, limit=1000)}
    assert d.evidence and all(item.event_id in event_ids for item in d.evidence)
    assert d.suggested_fixes[0].kind == "upstream_data"
    assert any("similar-failure search is not available" in gap for gap in d.evidence_gaps)
    with pytest.raises(NotFoundError):
        await diagnose("no-such-execution", executions=stack.executions)


async def test_a_step_that_fails_then_passes_across_runs_is_intermittent(stack: Stack,
                                                                         tmp_path: Path) -> None:
    assert stack.executions is not None
    path = await register(stack, """\
        workflow:
          - step: reconcile
            tool:
              kind: python
              input: {path: "{{ workload.counter }}"}
              code: |
                import os
                n = int(open(path).read()) + 1 if os.path.exists(path) else 1
                open(path, "w").write(str(n))
                if n % 2:
                    raise RuntimeError(f"snapshot {n} incomplete")
                result = n
        """)
    payload = {"counter": str(tmp_path / "counter.txt")}
    runs = [await run(stack, path, payload) for _ in range(3)]
    d = await diagnose(runs[-1], executions=stack.executions)
    assert (d.root_cause_step, d.root_cause_type, d.transience) == \
        ("reconcile", "python_exception", "intermittent")
    assert any("succeeded in execution " + runs[1] in e.fact for e in d.evidence)


class Finder:
    """A stand-in for agents.embeddings.similar.SimilarFailures."""

    def __init__(self, results: list[dict[str, Any]] | Exception) -> None:
        self.results = results
        self.asked: list[tuple[str, str | None, int]] = []

    async def for_execution(self, execution_id: str, step: str | None = None, limit: int = 5) -> Any:
        self.asked.append((execution_id, step, limit))
        if isinstance(self.results, Exception):
            raise self.results
        return self.results


async def test_similar_failures_are_re_ranked_by_their_own_root_cause(stack: Stack) -> None:
    assert stack.executions is not None
    path = await register(stack, UPSTREAM_EMPTY)
    first, second = await run(stack, path), await run(stack, path)
    other = await run(stack, await register(stack, "workflow:\n  - step: x\n    tool: {kind: python, "
                                                   "code: \"raise ValueError('no')\"}\n"))
    finder = Finder([{"execution_id": other, "step": "x", "score": 0.95, "error_kind": "python_exception"},
                     {"execution_id": first, "step": "latest", "score": 0.9, "error_kind": "python_exception",
                      "next": {"later_run_succeeded": False}}])
    d = await diagnose(second, executions=stack.executions, similar=finder)
    assert finder.asked == [(second, "fetch_orders", 20)]
    assert [s.execution_id for s in d.similar_failures] == [first, other]
    assert [s.root_cause_type for s in d.similar_failures] == ["validation", "python_exception"]
    broken = await diagnose(second, executions=stack.executions, similar=Finder(RuntimeError("index down")))
    assert broken.similar_failures == []
    assert any("similar-failure search failed (RuntimeError)" in gap for gap in broken.evidence_gaps)
    assert broken.root_cause_step == "fetch_orders"


REFINED = {"summary": "fetch_orders returned no orders, so latest had nothing to read.",
           "suggested_fixes": [{"kind": "upstream_data", "description": "Check the filter of fetch_orders.",
                                "change": {"step": "fetch_orders", "set": {"retry": {"max_attempts": 1}}}}]}


def refiner(llm: FakeLlm, secrets: list[str] | None = None) -> LlmRefiner:
    return LlmRefiner(LlmSettings(model="fake-model", base_url=llm.url, api_key="sk-test-key", timeout_s=10),
                      secrets=secrets or [])


async def test_an_llm_refines_the_summary_and_the_fixes(stack: Stack) -> None:
    assert stack.executions is not None
    execution_id = await run(stack, await register(stack, UPSTREAM_EMPTY))
    with FakeLlm([json.dumps(REFINED)]) as llm:
        d = await diagnose(execution_id, executions=stack.executions, llm=refiner(llm))
        [request] = llm.requests
    assert d.explained_by == "rules+llm"
    assert d.summary == REFINED["summary"]
    assert d.suggested_fixes[0].description == "Check the filter of fetch_orders."
    assert (d.root_cause_step, d.root_cause_type) == ("fetch_orders", "validation")  # the rules decide these
    body = request["body"]
    assert body["model"] == "fake-model" and body["response_format"] == {"type": "json_object"}
    assert request["headers"].get("authorization") == "Bearer sk-test-key"
    prompt = json.loads(body["messages"][1]["content"])
    assert prompt["diagnosis"]["root_cause_step"] == "fetch_orders"
    assert "latest" in prompt["facts"]["steps"]


BAD_FIX = '{"summary": "s", "suggested_fixes": [{"kind": "reboot", "description": "d"}]}'


@pytest.mark.parametrize("reply", ["The orders step returned nothing.", '{"summary": ""}', BAD_FIX,
                                   FakeLlm.status(500)],
                         ids=["prose", "empty-summary", "bad-fix-kind", "http-500"])
async def test_an_unusable_llm_answer_keeps_the_rules_diagnosis(stack: Stack, reply: Any) -> None:
    assert stack.executions is not None
    execution_id = await run(stack, await register(stack, UPSTREAM_EMPTY))
    plain = await diagnose(execution_id, executions=stack.executions)
    with FakeLlm([reply]) as llm:
        d = await diagnose(execution_id, executions=stack.executions, llm=refiner(llm))
        assert llm.requests
    assert d.explained_by == "rules" and d.summary == plain.summary
    assert d.suggested_fixes == plain.suggested_fixes
    assert any(gap.startswith("the LLM") for gap in d.evidence_gaps)


async def test_no_credential_value_reaches_the_llm(stack: Stack) -> None:
    assert stack.executions is not None and stack.store is not None
    canary = "canary-" + uuid.uuid4().hex
    await stack.store.credentials.set("partner_api", "http", {"token": canary})
    # a user pasted the token into the playbook (a header not named like a secret) and into the code
    path = await register(stack, f"""\
        workload: {{note: "{canary}"}}
        workflow:
          - step: call_partner
            tool:
              kind: python
              input: {{trace: "{canary}", note: "{{{{ workload.note }}}}"}}
              code: "raise RuntimeError('partner rejected trace ' + trace + ' {canary}')"
        """)
    execution_id = await run(stack, path)
    service = DiagnosisService(stack.executions, secrets=SecretValues(stack.store),
                               llm=LlmSettings(model="fake-model", base_url="unused"))
    with FakeLlm([json.dumps(REFINED)]) as llm:
        service.llm = LlmSettings(model="fake-model", base_url=llm.url, api_key="sk-test-key", timeout_s=10)
        d = await service.diagnose(execution_id)
        recorded = llm.recorded_text()
    assert llm.requests and "call_partner" in recorded  # the step was described...
    assert canary not in recorded  # ...without the credential's value
    assert canary not in d.model_dump_json()
