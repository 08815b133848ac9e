"""A playbook call's timeout survives an orchestrator killed with SIGKILL: its deadline is in the log."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control_plane.stack import Stack
from tests.harness.polling import poll
from tests.integration.runtime.conftest import register

pytestmark = pytest.mark.anyio

TIMEOUT_S = 8.0


async def test_a_call_timeout_cancels_the_child_at_its_recorded_deadline_after_the_orchestrator_is_killed(
        client: Stack, spawn: Any, tmp_path: Path) -> None:
    marker = tmp_path / "child-started"
    child = await register(client, """\
        workload: {marker: ''}
        workflow:
          - step: hang
            tool:
              kind: python
              input: {marker: "{{ workload.marker }}"}
              code: |
                import time
                time.sleep(3)  # the orchestrator is killed after this: a timer armed afresh would be late
                open(marker, "w").close()
                time.sleep(120)
        """)
    parent = await register(client, f"""\
        workflow:
          - step: call
            tool: {{kind: playbook, path: {child}, input: {{marker: "{marker}"}}, timeout: {TIMEOUT_S:g}s}}
        """)
    orchestrator = spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    spawn("worker", "start", "--concurrency", "2")
    executions, store = client.executions, client.store
    assert executions is not None and store is not None
    execution_id = await executions.start(parent)
    children = await poll(lambda: executions.children(execution_id), timeout_s=60, what="the child execution")
    child_id = children[0]  # type: ignore[index]
    await poll(marker.exists, timeout_s=60, what="the child's step to run for 3 s")
    started = next(e for e in await store.events.events(child_id) if e.type == "execution.started")
    deadline = datetime.fromisoformat(started.payload["call_deadline"])
    assert abs((deadline - started.timestamp).total_seconds() - TIMEOUT_S) < 1

    os.killpg(orchestrator.pid, signal.SIGKILL)
    orchestrator.wait(timeout=10)
    restarted_at = datetime.now(UTC)
    assert restarted_at < deadline, "the orchestrator was killed after the deadline: nothing was tested"
    spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    log = tmp_path / "proc-2.log"  # the third process `spawn` started
    await poll(lambda: log.exists() and "serving:" in log.read_text(), timeout_s=60,
               what="the restarted server")
    serving_at = datetime.now(UTC)  # it resumed the executions (and armed the timer) before serving

    summary = await executions.wait(execution_id, timeout_s=90)
    assert summary["status"] == "failed"
    error = summary["steps"]["call"]["error"]
    assert error["kind"] == "timeout" and f"timed out after {TIMEOUT_S}" in error["message"], error
    assert (await executions.summary(child_id))["status"] == "cancelled"
    cancels = [e for e in await store.events.events(child_id) if e.type == "execution.cancel_requested"]
    assert len(cancels) == 1 and cancels[0].payload["timeout"] is True
    # not before the recorded deadline, and at it (or at once when the restart ended after it): a timer
    # armed afresh at the restart would fire at least 3 s later
    cancelled_at = cancels[0].timestamp
    assert cancelled_at >= deadline - timedelta(milliseconds=50)
    assert cancelled_at <= max(deadline, serving_at) + timedelta(seconds=1.5), (
        f"cancelled {(cancelled_at - deadline).total_seconds():.1f} s after the deadline and "
        f"{(cancelled_at - serving_at).total_seconds():.1f} s after the restarted server was serving")
    failed = next(e for e in await store.events.events(execution_id)
                  if e.type == "step.failed" and e.step == "call")
    assert cancelled_at <= failed.timestamp <= cancelled_at + timedelta(seconds=10)  # the child's end
