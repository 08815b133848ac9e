"""Spec section 8, sub-playbooks: examples 09_child / 09_parent (every `# expect:` line) and a child's
failure, through `noetl register` and `noetl run --json` on the session's stack."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from tests.conftest import EXAMPLES
from tests.e2e.helpers import Doc, Noetl, expect_lines, make_playbook, of_type, terminal_events


def completed(code: int, doc: Doc) -> None:
    assert (code, doc["status"]) == (0, "completed"), doc


def test_09_child_registers_and_run_alone_doubles_its_input(noetl: Noetl) -> None:
    child = EXAMPLES / "09_child.yaml"
    assert expect_lines(child) == [
        'expect (run alone with payload {"x": 5}): status completed; steps.finalize.result == {"double": 10}']
    registered = noetl("register", str(child))
    assert registered.returncode == 0, registered.stderr
    assert "examples/child" in registered.stdout
    code, doc = noetl.run_json(child, {"x": 5})
    completed(code, doc)
    assert doc["steps"]["finalize"]["result"] == {"double": 10}


def test_09_parent_runs_one_child_per_item_each_recording_its_parent(noetl: Noetl,
                                                                     events: Callable) -> None:
    parent = EXAMPLES / "09_parent.yaml"
    assert expect_lines(parent) == [
        "expect: status completed",
        'expect: steps.each.result == [{"double": 2}, {"double": 4}, {"double": 6}]',
        "expect: three child executions exist, each recording this execution as its parent"]
    registered = noetl("register", str(EXAMPLES / "09_child.yaml"))
    assert registered.returncode == 0, registered.stderr
    code, doc = noetl.run_json(parent)
    completed(code, doc)
    assert doc["steps"]["each"]["result"] == [{"double": 2}, {"double": 4}, {"double": 6}]
    parent_id = doc["execution_id"]
    scheduled = of_type(events(parent_id), "step.scheduled", "each")
    children = [e["payload"]["child_execution_id"] for e in scheduled]
    assert len(set(children)) == 3
    for child_id in children:  # int64 ids as well (spec 13), made after their parent's
        assert len(child_id) == 19 and child_id.isdigit() and int(parent_id) < int(child_id) < 2**63
    for child_id in children:
        log = events(child_id)
        started = log[0]
        assert started["type"] == "execution.started"
        assert started["payload"]["parent_execution_id"] == parent_id
        assert started["payload"]["path"] == "examples/child"
        assert [e["type"] for e in terminal_events(log)] == ["execution.completed"]


def test_a_playbook_call_with_payload_returns_the_childs_last_step_and_a_child_failure_fails_the_step(
        noetl: Noetl) -> None:
    child_name = f"sub_child_{uuid.uuid4().hex[:8]}"
    child = noetl.write(make_playbook(child_name, """\
        workload: {x: 0}
        workflow:
          - step: check
            tool:
              kind: python
              input: {x: "{{ workload.x }}"}
              code: |
                if int(x) < 0:
                    raise ValueError(f"negative input {x}")
                result = int(x)
            next: {arcs: [{step: last}]}
          - step: last
            tool: {kind: python, input: {x: "{{ check }}"}, code: "result = {'tripled': x * 3}"}
        """))
    registered = noetl("register", str(child))
    assert registered.returncode == 0, registered.stderr
    parent = make_playbook(f"sub_parent_{uuid.uuid4().hex[:8]}", f"""\
        workload: {{x: 3}}
        workflow:
          - step: call
            tool: {{kind: playbook, path: e2e/{child_name}, task: triple_it,
                   payload: {{x: "{{{{ workload.x }}}}"}}}}
        """)
    (code, ok), (fcode, bad) = noetl.run_many([(parent, None), (parent, {"x": -1})])
    completed(code, ok)
    assert ok["steps"]["call"]["result"] == {"tripled": 9}
    [scheduled] = [e for e in noetl.events(ok["execution_id"])
                   if e["type"] == "step.scheduled" and e["step"] == "call"]
    assert scheduled["payload"]["task"] == "triple_it"  # NoETL's `task:` is recorded with the call
    assert (fcode, bad["status"]) == (1, "failed"), bad
    error = bad["steps"]["call"]["error"]
    assert bad["steps"]["call"]["status"] == "failed"
    assert "child execution" in error["message"] and "negative input -1" in error["message"]
    assert bad["error"]["step"] == "call"
