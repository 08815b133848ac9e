"""Sub-playbooks (spec 8): the child's end is the parent step's outcome; timeouts and cancels cascade."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from control_plane.stack import Stack
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio


async def register(stack: Stack, body: str) -> str:
    assert stack.executions is not None
    name = f"c_{uuid.uuid4().hex[:8]}"
    text = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}}}\n" + textwrap.dedent(body)
    return (await stack.executions.register(text)).path


SLOW_CHILD = """\
    workflow:
      - step: nap
        tool: {kind: python, code: "import time; time.sleep(30)"}
    """


async def test_a_child_that_outlives_the_call_timeout_fails_the_step_with_timeout(stack: Stack) -> None:
    child = await register(stack, SLOW_CHILD)
    parent = await register(stack, f"""\
        workflow:
          - step: call
            tool: {{kind: playbook, path: {child}, timeout: 1s}}
        """)
    assert stack.executions is not None
    execution_id = await stack.executions.start(parent)
    summary = await stack.executions.wait(execution_id, timeout_s=60)
    assert summary["status"] == "failed"
    assert summary["steps"]["call"]["error"]["kind"] == "timeout"
    children = await stack.executions.children(execution_id)
    assert len(children) == 1
    assert (await stack.executions.summary(children[0]))["status"] == "cancelled"


async def test_cancelling_a_parent_cancels_its_running_child(stack: Stack) -> None:
    child = await register(stack, SLOW_CHILD)
    parent = await register(stack, f"""\
        workflow:
          - step: call
            tool: {{kind: playbook, path: {child}}}
        """)
    assert stack.executions is not None
    execution_id = await stack.executions.start(parent)
    executions = stack.executions
    children = await poll(lambda: executions.children(execution_id), timeout_s=30, what="the child execution")
    await poll(lambda: _running(stack, children[0]), timeout_s=30, what="the child's step to start")  # type: ignore[index]
    await stack.executions.cancel(execution_id, "operator")
    summary = await stack.executions.wait(execution_id, timeout_s=30)
    assert summary["status"] == "cancelled"
    child_summary = await stack.executions.wait(children[0], timeout_s=30)  # type: ignore[index]
    assert child_summary["status"] == "cancelled"


async def _running(stack: Stack, execution_id: str) -> bool:
    assert stack.executions is not None
    summary = await stack.executions.summary(execution_id)
    return summary["steps"].get("nap", {}).get("status") == "running"


async def test_a_call_to_an_unregistered_playbook_fails_the_step_clearly(stack: Stack) -> None:
    parent = await register(stack, """\
        workflow:
          - step: call
            tool: {kind: playbook, path: nowhere/to_be_found}
        """)
    assert stack.executions is not None
    summary = await stack.executions.wait(await stack.executions.start(parent), timeout_s=30)
    assert summary["status"] == "failed"
    error = summary["steps"]["call"]["error"]
    assert error["kind"] == "validation" and "noetl register" in error["message"]
