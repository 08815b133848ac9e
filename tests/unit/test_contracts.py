"""Contracts (`assert: {expects, returns}`, spec 3) on tools, workbook tasks and playbook calls: a breach
is a `contract` error naming what is missing and where, and the diagnosis says how to fix it."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from engine.net.contracts import check_expects, check_returns, expects_breach, returns_breach
from engine.net.validate import validate_text
from engine.protocol.commands import RunStep, StartChild
from engine.protocol.events import Event
from engine.protocol.results import ResultEnvelope
from engine.runtime.step_runner import StepRunner
from engine.tools.base import Tool, ToolCall
from tests.unit.test_diagnosis_rules import Log
from tests.unit.test_fire import Sim

pytestmark = pytest.mark.anyio



class _Echo:
    """Returns `config.result`, else its input; counts its runs (a tool the contract must keep idle)."""

    kind = "echo"

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    async def run(self, call: ToolCall) -> ResultEnvelope:
        self.calls.append(call)
        return ResultEnvelope.ok(call.config.get("result", dict(call.input)))


class _Tools:
    def __init__(self) -> None:
        self.echo = _Echo()

    def get(self, kind: str) -> Tool:
        return self.echo


async def _run(tasks: list[dict[str, Any]], *, step_input: dict[str, Any] | None = None,
               workbook: dict[str, list[dict[str, Any]]] | None = None,
               contracts: dict[str, dict[str, Any]] | None = None) -> tuple[ResultEnvelope, _Tools]:
    tools = _Tools()
    command = RunStep(command_id="c", execution_id="x", step="load", run=1, pool="p", tasks=tasks,
                      input=step_input or {}, workbook=workbook or {}, workbook_contracts=contracts or {})

    async def report(event: Event) -> None:
        return None

    outcome = await StepRunner(tools, started_delay_s=0).run(command, report)
    assert outcome.event.result is not None
    return outcome.event.result, tools


# ------------------------------------------------------------------------------------------ the worker
async def test_a_tool_whose_input_lacks_an_expected_name_does_not_run_and_fails_with_contract() -> None:
    envelope, tools = await _run([{"kind": "echo", "assert": {"expects": ["customer_id", "region"]}}],
                                 step_input={"region": "eu"})
    assert tools.echo.calls == []
    assert envelope.status == "error" and envelope.error is not None
    error = envelope.error
    assert (error.kind, error.retryable, error.code, error.source) == ("contract", False, "CONTRACT_EXPECTS",
                                                                       "echo")
    assert "step 'load'" in error.message and "`customer_id`" in error.message
    assert "`region`" not in error.message


async def test_a_null_input_value_breaks_expects_like_a_missing_one() -> None:
    envelope, tools = await _run([{"kind": "echo", "input": {"customer_id": None},
                                   "assert": {"expects": ["customer_id"]}}])
    assert tools.echo.calls == [] and envelope.error is not None and envelope.error.kind == "contract"


async def test_a_satisfied_contract_lets_the_tool_run_and_keeps_its_result() -> None:
    envelope, tools = await _run([{"kind": "echo", "input": {"customer": {"id": 7}},
                                   "assert": {"expects": ["customer.id"], "returns": ["customer"]}}])
    assert envelope.status == "ok" and envelope.data == {"customer": {"id": 7}}
    assert len(tools.echo.calls) == 1
    assert "assert" not in tools.echo.calls[0].config  # the contract is not tool configuration


async def test_a_result_without_a_returned_key_fails_after_the_tool_ran_naming_the_task() -> None:
    envelope, tools = await _run([
        {"kind": "echo", "name": "fetch", "result": {"id": 1}},
        {"kind": "echo", "name": "score", "result": {"total": 3}, "assert": {"returns": ["score", "total"]}},
    ])
    assert len(tools.echo.calls) == 2
    assert envelope.error is not None
    error = envelope.error
    assert (error.kind, error.code, error.retryable) == ("contract", "CONTRACT_RETURNS", False)
    assert "task 'score' of step 'load'" in error.message
    assert "`score`" in error.message and "`total`" not in error.message.split("lacks")[1].split("(")[0]
    assert "it has total" in error.message


async def test_a_result_that_is_not_a_mapping_breaks_returns_and_says_what_it_was() -> None:
    envelope, _ = await _run([{"kind": "echo", "result": [1, 2], "assert": {"returns": ["rows"]}}])
    assert envelope.error is not None and "a list of 2, not a mapping" in envelope.error.message


async def test_a_workbook_task_contract_is_enforced_on_its_call() -> None:
    workbook = {"score": [{"kind": "echo", "result": {"total": 1}}]}
    contracts = {"score": {"assert": {"expects": ["customer_id"], "returns": ["score"]}}}
    missing, tools = await _run([{"kind": "workbook", "name": "score"}], workbook=workbook,
                                contracts=contracts)
    assert tools.echo.calls == [] and missing.error is not None
    assert "workbook task 'score' (called by step 'load')" in missing.error.message
    assert "`customer_id`" in missing.error.message
    ran, tools = await _run([{"kind": "workbook", "name": "score", "input": {"customer_id": 7}}],
                            workbook=workbook, contracts=contracts)
    assert len(tools.echo.calls) == 1 and ran.error is not None
    assert ran.error.code == "CONTRACT_RETURNS" and "result lacks `score`" in ran.error.message


async def test_a_contract_on_the_workbook_call_itself_checks_the_call() -> None:
    workbook = {"score": [{"kind": "echo", "result": {"score": 2}}]}
    envelope, _ = await _run([{"kind": "workbook", "name": "score", "assert": {"returns": ["score"]}}],
                             workbook=workbook)
    assert envelope.status == "ok" and envelope.data == {"score": 2}


def test_an_http_result_answers_returns_from_its_body_too() -> None:
    http = {"status_code": 200, "headers": {}, "url": "u", "elapsed_ms": 1, "data": {"items": []},
            "body": {"items": []}}
    holder = {"assert": {"returns": ["status_code", "items"]}}
    assert check_returns(holder, ResultEnvelope.ok(http), step="s") is None
    assert check_expects({"assert": {"expects": []}}, {}, step="s") is None


def test_the_playbook_compiles_workbook_contracts_into_the_step_command() -> None:
    result = validate_text(textwrap.dedent("""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: t}
        workbook:
          - name: score
            tool: {kind: noop}
            assert: {expects: [customer_id], returns: [score]}
        workflow:
          - step: rate
            tool: {kind: workbook, name: score}
        """))
    assert result.net is not None
    parts = result.net.transition("rate").command
    assert parts.workbook_contracts == {
        "score": {"assert": {"expects": ["customer_id"], "returns": ["score"]}}}


# ------------------------------------------------------------------------------------------ playbook calls
CHILD = """\
workflow:
  - step: call
    input: {region: eu}
    tool: {kind: playbook, path: risk/score, input: {customer_id: "{{ workload.customer_id }}"},
           assert: {expects: [customer_id], returns: [score]}}
"""


def _started_children(sim: Sim) -> list[StartChild]:
    return [c for c in sim.commands if isinstance(c, StartChild)]


def test_a_playbook_call_whose_input_lacks_an_expected_name_starts_no_child() -> None:
    sim = Sim(CHILD, payload={"customer_id": None})
    assert _started_children(sim) == []
    failed = [e for e in sim.derived if e.type == "step.failed"]
    assert failed and failed[0].result is not None and failed[0].result.error is not None
    assert failed[0].result.error.kind == "contract" and "`customer_id`" in failed[0].result.error.message
    assert sim.state.status == "failed"


def test_a_child_result_without_a_returned_key_fails_the_calling_step() -> None:
    sim = Sim(CHILD, payload={"customer_id": 7})
    [start] = _started_children(sim)
    assert start.input == {"region": "eu", "customer_id": 7}
    sim.feed("step.succeeded", step="call", command_id=start.command_id,
             result=ResultEnvelope.ok({"total": 1}))
    failed = [e for e in sim.derived if e.type == "step.failed"]
    assert failed and failed[0].result is not None and failed[0].result.error is not None
    assert failed[0].result.error.code == "CONTRACT_RETURNS"
    assert sim.state.steps["call"].status == "failed" and sim.state.status == "failed"


def test_a_child_result_with_the_returned_key_completes_the_step() -> None:
    sim = Sim(CHILD, payload={"customer_id": 7})
    [start] = _started_children(sim)
    sim.feed("step.succeeded", step="call", command_id=start.command_id,
             result=ResultEnvelope.ok({"score": 0.9}))
    assert sim.state.steps["call"].status == "succeeded" and sim.state.status == "completed"


# ------------------------------------------------------------------------------------------ the diagnosis
def _diagnosed(playbook: str, envelope: ResultEnvelope, step: str) -> Any:
    log = Log(playbook)
    assert envelope.error is not None
    log.add("step.scheduled", step)
    log.add("step.failed", step, envelope, attempt=1)
    log.add("execution.failed", payload={"error": {"kind": "contract", "message": envelope.error.message,
                                                   "step": step}})
    return log.diagnose()


def test_the_diagnosis_of_a_missing_input_names_the_field_and_says_to_pass_it_in_input() -> None:
    playbook = """\
        workflow:
          - step: score
            tool: {kind: python, code: "result = 1", assert: {expects: [customer_id]}}
        """
    diagnosis = _diagnosed(playbook, expects_breach(["customer_id"], step="score"), "score")
    assert diagnosis.root_cause_type == "contract" and diagnosis.root_cause_step == "score"
    assert diagnosis.transience == "permanent"
    first = diagnosis.suggested_fixes[0]
    assert first.kind == "input"
    assert "step 'score''s input lacks `customer_id`" in first.description.lower()
    assert "pass it in `input:`" in first.description
    assert first.change == {"step": "score", "set": {"input": {"customer_id": "..."}}}


def test_the_diagnosis_points_at_the_template_that_rendered_null() -> None:
    playbook = """\
        workflow:
          - step: score
            input: {customer_id: "{{ load.id }}"}
            tool: {kind: python, code: "result = 1", assert: {expects: [customer_id]}}
        """
    diagnosis = _diagnosed(playbook, expects_breach(["customer_id"], step="score"), "score")
    fix = diagnosis.suggested_fixes[0]
    assert "`{{ load.id }}`" in fix.description and "null" in fix.description
    assert fix.change == {"step": "score", "edit": "input", "fields": ["customer_id"],
                          "was": {"customer_id": "{{ load.id }}"}}


def test_the_diagnosis_of_a_missing_result_key_names_the_task_and_the_key() -> None:
    playbook = """\
        workflow:
          - step: rate
            tool:
              - {name: fetch, kind: python, code: "result = 1"}
              - {name: score, kind: python, code: "result = {}", assert: {returns: [score]}}
        """
    envelope = returns_breach(["score"], {"total": 1}, step="rate", task="score")
    diagnosis = _diagnosed(playbook, envelope, "rate")
    fix = diagnosis.suggested_fixes[0]
    assert fix.kind == "code"
    assert "Task 'score' of step 'rate''s result lacks `score`" in fix.description
    assert fix.change == {"step": "rate", "edit": "tool.code", "returns": ["score"], "task": "score"}
