"""Spec section 13 (templating) and section 12 (short forms run the same as their canonical spelling),
each as a small playbook run through the real stack with `noetl run --json`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import Batch, Case, Noetl, completed, failed, inline, warnings_of

NATIVE = """\
workload: {n: 3, xs: [1, 2], d: {k: v}, flag: true}
workflow:
  - step: show
    tool:
      kind: python
      input:
        n: "{{ workload.n }}"
        xs: "{{ workload.xs }}"
        d: "{{ workload.d }}"
        flag: "{{ workload.flag }}"
        text: "n={{ workload.n }}"
        ids: "ids: {{ workload.xs }}"
        top: "{{ n }}"
        nothing: "{{ ctx.nothing }}"
        dflt: "{{ ctx.nothing | default('d') }}"
        cond: "{{ 'yes' if ctx.nothing else 'no' }}"
        json: "{{ workload.d | tojson }}"
        b64: "{{ 'hi' | b64encode }}"
        unb64: "{{ 'aGk=' | b64decode }}"
      code: |
        def main(**kw):
            return {k: [type(v).__name__, v] for k, v in kw.items()}
"""

FLAKY = """\
import os
n = int(open(path).read() or 0) + 1 if os.path.exists(path) else 1
open(path, "w").write(str(n))
if n < 2:
    raise ConnectionError("flaky")
result = {"n": n}
"""


def indented(code: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in code.splitlines())


SHORT = f"""\
workload: {{counter: ""}}
workbook:
  - name: double
    tool: {{kind: python, input: {{v: 0}}, code: "result = v * 2"}}
workflow:
  - step: start
    tool: python
    input: {{path: "{{{{ workload.counter }}}}"}}
    code: |
{indented(FLAKY, 6)}    retry: {{max_attempts: 3, initial_delay: 0.05}}
    next: [{{step: twice, args: {{value: "{{{{ start.n }}}}"}}}}]
  - step: twice
    tool: workbook
    name: double
    input: {{v: "{{{{ value }}}}"}}
    next: done
  - step: done
    tool: noop
"""

CANONICAL = f"""\
workload: {{counter: ""}}
workbook:
  - name: double
    tool: {{kind: python, input: {{v: 0}}, code: "result = v * 2"}}
workflow:
  - step: start
    input: {{path: "{{{{ workload.counter }}}}"}}
    tool:
      kind: python
      code: |
{indented(FLAKY, 8)}      spec:
        policy:
          rules:
            - when: "{{{{ output.status == 'error' }}}}"
              then: {{do: retry, attempts: 3, delay: 0.05, backoff: exponential, multiplier: 2}}
    next:
      spec: {{mode: exclusive}}
      arcs: [{{step: twice, set: {{ctx.value: "{{{{ start.n }}}}"}}}}]
  - step: twice
    input: {{v: "{{{{ value }}}}"}}
    tool: {{kind: workbook, name: double}}
    next: {{arcs: [{{step: done}}]}}
  - step: done
    tool: {{kind: noop}}
"""


def build_cases(scratch: Path) -> dict[str, Case]:
    return {
        "native": Case(inline("native", NATIVE), events=True),
        "workload_templates": Case(inline("workload_templates", """\
            workload:
              who: anon
              run: "{{ execution_id }}"
              job_id: "{{ job.uuid }}"
              greeting: "hi {{ who }}"
              from_payload: "{{ payload.tag | default('none') }}"
            workflow:
              - step: read
                tool:
                  kind: python
                  input: {w: "{{ workload }}", same: "{{ execution_id == workload.run }}"}
                  code: "result = {'w': w, 'same': same}"
            """), payload={"who": "ann", "tag": "t1"}),
        "sandbox": Case(inline("sandbox", """\
            workflow:
              - step: peek
                tool: {kind: python, input: {x: "{{ ''.__class__.__mro__ }}"}, code: "result = x"}
            """)),
        "not_run_is_null": Case(inline("not_run_is_null", """\
            workflow:
              - step: start
                tool: {kind: noop}
                next: [{step: skipped, when: "{{ false }}"}, {step: look}]
              - {step: skipped, tool: {kind: noop, result: 1}}
              - step: look
                tool:
                  kind: python
                  input: {value: "{{ skipped }}", is_none: "{{ skipped is none }}",
                          defined: "{{ skipped is defined }}"}
                  code: "result = {'value': value, 'is_none': is_none, 'defined': defined}"
            """)),
        "short": Case(inline("short", SHORT), payload={"counter": str(scratch / "short.txt")}),
        "canonical": Case(inline("canonical", CANONICAL),
                          payload={"counter": str(scratch / "canonical.txt")}),
    }


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    batch = e2e_stack.batch(build_cases(tmp_path_factory.mktemp("counters")))
    yield batch
    batch.close()


def test_a_single_expression_yields_its_native_value_and_missing_values_are_null_and_falsy(
        runs: Batch) -> None:
    run = runs["native"]
    completed(run)
    assert run.step("show")["result"] == {
        "n": ["int", 3], "xs": ["list", [1, 2]], "d": ["dict", {"k": "v"}], "flag": ["bool", True],
        "text": ["str", "n=3"], "ids": ["str", "ids: [1, 2]"], "top": ["int", 3],
        "nothing": ["NoneType", None], "dflt": ["str", "d"], "cond": ["str", "no"],
        "json": ["str", '{"k": "v"}'], "b64": ["str", "aGk="], "unb64": ["str", "hi"],
    }


def test_reading_a_missing_value_is_recorded_as_a_warning_on_the_steps_events(runs: Batch) -> None:
    run = runs["native"]
    warnings = warnings_of(run.log, "show")
    assert any("ctx.nothing" in w and "not set" in w for w in warnings), warnings


def test_workload_templates_render_once_at_start_with_execution_id_job_and_payload(runs: Batch) -> None:
    run = runs["workload_templates"]
    completed(run)
    result = run.step("read")["result"]
    execution_id = int(run.doc["execution_id"])  # a number in templates (spec 13), digits in the CLI
    assert result["same"] is True
    assert result["w"] == {"who": "ann", "run": execution_id, "job_id": execution_id, "greeting": "hi ann",
                           "from_payload": "t1", "tag": "t1"}


def test_the_sandbox_refuses_attribute_access_to_internals(runs: Batch) -> None:
    run = runs["sandbox"]
    failed(run)
    error = run.step("peek")["error"]
    assert "unsafe" in error["message"]


def test_every_step_name_is_defined_and_null_until_the_step_runs(runs: Batch) -> None:
    run = runs["not_run_is_null"]
    completed(run)
    assert run.step("look")["result"] == {"value": None, "is_none": True, "defined": True}


def test_short_forms_run_the_same_as_their_canonical_spelling(runs: Batch) -> None:
    short, canonical = runs["short"], runs["canonical"]
    completed(short)
    completed(canonical)
    outcome = {name: (step["status"], step["result"], step["attempts"])
               for name, step in short.doc["steps"].items()}
    assert outcome == {"start": ("succeeded", {"n": 2}, 2), "twice": ("succeeded", 4, 1),
                       "done": ("succeeded", {}, 1)}
    assert outcome == {name: (step["status"], step["result"], step["attempts"])
                       for name, step in canonical.doc["steps"].items()}
