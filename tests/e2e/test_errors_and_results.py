"""Spec section 9 (result envelopes, error kinds, large results by reference) and section 3.1 (the python
tool), as small playbooks run through the real stack with `noetl run --json`. Independent questions about
the python tool share one execution: best-effort branches of one fan-out, one step each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    Batch,
    Case,
    Noetl,
    Outcome,
    branch_error,
    completed,
    failed,
    fan_out,
    inline,
    of_type,
)

SCRIPT = "def main(a, b):\n    return {'sum': a + b, 'from': 'script'}\n"
SOCKET_REFUSED = ("import socket\n"
                  "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
                  "s.close()\nsocket.create_connection(('127.0.0.1', port), timeout=2)")
TALK = ('print("hello from the step")\n'
        "def main(n, **rest):\n"
        '    return {"n": n, "region": context["workload"]["region"], "input": input_data["n"],\n'
        '            "dumped": j.dumps([n])}\n')


def python(code: str, extra: str = "") -> str:
    return f"{{kind: python, code: {json.dumps(code)}{extra}}}"


def build_cases(scripts: Path) -> dict[str, Case]:
    script = scripts / "add.py"
    script.write_text(SCRIPT)
    return {
        "python": Case(inline("python", fan_out({
            "value_error": python("raise ValueError('bad value 42')"),
            "connection_error": python("raise ConnectionError('reset by peer')"),
            "socket_refused": python(SOCKET_REFUSED),
            "timeout_error": python("raise TimeoutError('upstream took too long')"),
            "memory_error": python("raise MemoryError()"),
            "status_error": python("result = {'status': 'error', 'reason': 'upstream said so'}"),
            "early": python("if x > 1:\n    return 'big'\nresult = 'small'", ", input: {x: 5}"),
            "run_script": f'{{kind: python, script: {{uri: "file://{script}"}}, input: {{a: 2, b: 3}}}}',
            "talk": python(TALK, ", libs: {j: json}, input: {n: 2}"),
        }, head="workload: {region: eu}")), events=True),
        "exit_in_code": Case(inline("exit_in_code", """\
            workflow:
              - step: start
                tool: {kind: noop}
                next: {spec: {mode: inclusive}, arcs: [{step: quitter}, {step: steady}]}
              - step: quitter
                tool: {kind: python, code: "import os; os._exit(3)"}
                next: {arcs: [{step: recovered, when: "{{ event.name == 'call.error' }}"}]}
              - step: recovered
                tool: {kind: python, code: "result = 'still serving'"}
              - step: steady
                tool: {kind: python, code: "result = 'steady'"}
            """)),
        "undefined_variable": Case(inline("undefined_variable", """\
            workflow:
              - step: start
                tool: {kind: noop, result: {team: {}}}
                next: {arcs: [{step: notify}]}
              - step: notify
                tool: {kind: python, input: {id: "{{ start.team.slack.id }}"}, code: "result = id"}
            """)),
        "not_run_attribute": Case(inline("not_run_attribute", """\
            workflow:
              - step: start
                tool: {kind: noop}
                next: [{step: a, when: "{{ false }}"}, {step: b}]
              - {step: a, tool: {kind: noop, result: {x: 1}}}
              - step: b
                tool: {kind: python, input: {x: "{{ a.x }}"}, code: "result = x"}
            """)),
        "large": Case(inline("large", """\
            workflow:
              - step: start
                tool: {kind: noop}
                next: {spec: {mode: inclusive}, arcs: [{step: big}, {step: each}]}
              - step: big
                tool: {kind: python, code: "result = {'blob': 'x' * 100000, 'n': 7}"}
                next: {arcs: [{step: measure_big}]}
              - step: measure_big
                tool: {kind: python, input: {b: "{{ big.blob }}", n: "{{ big.n }}"},
                       code: "result = {'len': len(b), 'n': n}"}
              - step: each
                loop: {in: [1, 2, 3], iterator: k, spec: {mode: parallel}}
                tool: {kind: python, code: "result = {'k': k, 'pad': 'y' * 70000}"}
                next: {arcs: [{step: measure_each}]}
              - step: measure_each
                tool: {kind: python, input: {xs: "{{ each }}"},
                       code: "result = [[x['k'], len(x['pad'])] for x in xs]"}
            """), events=True),
    }


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    batch = e2e_stack.batch(build_cases(tmp_path_factory.mktemp("scripts")))
    yield batch
    batch.close()


def failed_step(run: Outcome, step: str) -> dict:
    failed(run)
    assert run.step(step)["status"] == "failed"
    assert run.doc["error"]["step"] == step
    return dict(run.step(step)["error"])


# ---------------------------------------------------------------------- error kinds (spec 3.1, 9)
def test_a_python_exception_is_a_python_exception_error_with_type_message_and_traceback(runs: Batch) -> None:
    error = branch_error(runs["python"], "value_error")
    assert error["kind"] == "python_exception"
    assert error["retryable"] is False
    assert error["type"] == "ValueError"
    assert "bad value 42" in error["message"]
    assert "ValueError" in error["traceback"]


@pytest.mark.parametrize("step", ["connection_error", "socket_refused"])
def test_a_connection_error_is_kind_connection_and_retryable(runs: Batch, step: str) -> None:
    error = branch_error(runs["python"], step)
    assert (error["kind"], error["retryable"]) == ("connection", True)


def test_a_timeout_error_is_kind_timeout_and_retryable(runs: Batch) -> None:
    error = branch_error(runs["python"], "timeout_error")
    assert (error["kind"], error["retryable"]) == ("timeout", True)


def test_a_memory_error_is_kind_resource_exhausted(runs: Batch) -> None:
    assert branch_error(runs["python"], "memory_error")["kind"] == "resource_exhausted"


def test_a_returned_status_error_dict_is_data_not_an_error(runs: Batch) -> None:
    run = runs["python"]
    completed(run)
    assert run.step("status_error")["status"] == "succeeded"
    assert run.step("status_error")["result"] == {"status": "error", "reason": "upstream said so"}
    assert run.step("status_error")["error"] is None


def test_code_that_kills_its_interpreter_fails_its_step_and_the_worker_keeps_serving(runs: Batch) -> None:
    run = runs["exit_in_code"]
    completed(run)
    assert run.step("quitter")["status"] == "failed"
    assert run.step("recovered")["result"] == "still serving"
    assert run.step("steady")["result"] == "steady"


def test_reading_into_a_missing_value_is_an_undefined_variable_error_naming_expression_and_step(
        runs: Batch) -> None:
    error = failed_step(runs["undefined_variable"], "notify")
    assert error["kind"] == "undefined_variable"
    assert "start.team.slack.id" in error["message"]
    assert "notify" in error["message"]


def test_reading_an_attribute_of_a_step_that_has_not_run_is_an_undefined_variable_error(runs: Batch) -> None:
    error = failed_step(runs["not_run_attribute"], "b")
    assert error["kind"] == "undefined_variable"
    assert "a.x" in error["message"]


# ---------------------------------------------------------------------- the python tool (spec 3.1)
def test_print_output_is_kept_with_the_events_and_code_sees_context_input_data_and_libs(
        runs: Batch) -> None:
    run = runs["python"]
    completed(run)
    assert run.step("talk")["result"] == {"n": 2, "region": "eu", "input": 2, "dumped": "[2]"}
    [outcome] = of_type(run.log, "step.succeeded", "talk")
    assert "hello from the step" in outcome["result"]["meta"]["stdout"]


def test_every_outcome_carries_the_envelope_meta_and_its_worker_pool_and_duration(runs: Batch) -> None:
    run = runs["python"]
    completed(run)
    outcomes = [e for e in run.log if e["type"] in ("step.succeeded", "step.failed") and not e["derived"]]
    assert len(outcomes) == 10  # start and the nine branches
    for event in outcomes:
        meta = event["result"]["meta"]
        assert meta["attempt"] == 1 and meta["duration_ms"] >= 0 and meta["worker"] and meta["pool"]
        assert event["worker"] == meta["worker"] and event["pool"] == meta["pool"]
        assert event["duration_ms"] is not None


def test_a_top_level_return_is_the_result(runs: Batch) -> None:
    run = runs["python"]
    completed(run)
    assert run.step("early")["result"] == "big"


def test_a_python_script_from_a_local_file_uri_runs_like_inline_code(runs: Batch) -> None:
    run = runs["python"]
    completed(run)
    assert run.step("run_script")["result"] == {"sum": 5, "from": "script"}


# ---------------------------------------------------------------------- large results (spec 9)
def test_data_over_64_kib_travels_by_reference_and_templates_read_it_transparently(runs: Batch) -> None:
    run = runs["large"]
    completed(run)
    assert run.step("measure_big")["result"] == {"len": 100000, "n": 7}
    assert run.step("big")["result"]["blob"] == "x" * 100000
    [outcome] = of_type(run.log, "step.succeeded", "big")
    assert outcome["result"]["data"] is None
    assert outcome["result"]["ref"]["size"] > 64 * 1024
    assert max(len(json.dumps(e)) for e in run.log if e["step"] == "big") < 64 * 1024


def test_large_loop_item_results_travel_by_reference_and_the_loop_result_reads_them_back(
        runs: Batch) -> None:
    run = runs["large"]
    completed(run)
    assert run.step("measure_each")["result"] == [[1, 70000], [2, 70000], [3, 70000]]
    items = of_type(run.log, "loop.item.succeeded", "each")
    assert len(items) == 3
    assert all(item["result"]["ref"] is not None and item["result"]["data"] is None for item in items)


def test_a_loop_whose_items_are_large_records_its_list_by_reference_not_inline(runs: Batch) -> None:
    run = runs["large"]
    completed(run)
    [outcome] = [e for e in of_type(run.log, "step.succeeded", "each") if e["loop_index"] is None]
    assert len(json.dumps(outcome)) < 64 * 1024
