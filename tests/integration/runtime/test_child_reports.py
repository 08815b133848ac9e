"""A parent hears of its child's end even when the orchestrator stopped between storing the child's end
and telling the parent: a restarted orchestrator reports it when it resumes the parent."""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg
import pytest

from control_plane.stack import Stack
from tests.integration.runtime.conftest import register

pytestmark = pytest.mark.anyio


async def test_a_child_that_ended_while_no_orchestrator_told_its_parent_is_reported_on_resume(
        client: Stack, spawn: Any, runtime_env: dict[str, str]) -> None:
    child = await register(client, """\
        workflow:
          - step: work
            tool: {kind: python, code: "result = {'answer': 42}"}
        """)
    parent = await register(client, f"""\
        workflow:
          - step: call
            tool: {{kind: playbook, path: {child}}}
            next: [{{step: after}}]
          - step: after
            tool: {{kind: noop, result: "{{{{ call.answer }}}}"}}
        """)
    server = spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    spawn("worker", "start", "--concurrency", "2")
    executions = client.executions
    assert executions is not None
    execution_id = await executions.start(parent)
    assert (await executions.wait(execution_id, timeout_s=60))["status"] == "completed"
    [child_id] = await executions.children(execution_id)
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)

    # the log as a crash right after the child's end was stored leaves it: the parent never heard of it
    with psycopg.connect(runtime_env["NOETL_PG_DSN"], autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # past the append-only guard, here only
        cut = conn.execute("SELECT min(seq) FROM events WHERE execution_id = %s AND step = 'call' AND "
                           "type = 'step.succeeded'", (execution_id,)).fetchone()[0]
        conn.execute("DELETE FROM events WHERE execution_id = %s AND seq >= %s", (execution_id, cut))
        conn.execute("UPDATE executions SET status = 'running', ended_at = NULL, last_seq = %s "
                     "WHERE execution_id = %s", (cut - 1, execution_id))
    assert (await executions.summary(child_id))["status"] == "completed"

    # a fresh subject prefix: the parent's first report is still in JetStream's duplicate window, which
    # would drop the new one; after a real crash there is no first report
    runtime_env["NOETL_BUS_PREFIX"] = f"{runtime_env['NOETL_BUS_PREFIX']}x"
    spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    spawn("worker", "start", "--concurrency", "2")
    summary = await executions.wait(execution_id, timeout_s=60)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["call"]["result"] == {"answer": 42}
    assert summary["steps"]["after"]["result"] == 42
    events = await client.store.events.events(execution_id)  # type: ignore[union-attr]
    assert [e.type for e in events if e.step == "call" and e.type == "step.succeeded"] == ["step.succeeded"]
