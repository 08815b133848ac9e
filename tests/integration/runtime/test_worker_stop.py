"""A worker told to stop (SIGTERM) gives back the steps still running after its drain time: they run
again on another worker, and the execution completes. They are not reported as cancelled."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from control_plane.stack import Stack
from tests.integration.runtime.conftest import register, step_started

pytestmark = pytest.mark.anyio


async def test_a_stopping_worker_gives_back_a_step_longer_than_its_drain_and_another_worker_runs_it(
        client: Stack, spawn: Any) -> None:
    path = await register(client, """\
        workflow:
          - step: long
            tool: {kind: python, code: "import time; time.sleep(12); result = 'done'"}
        """)
    spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    first = spawn("worker", "start", "--concurrency", "2")
    executions, store = client.executions, client.store
    assert executions is not None and store is not None
    execution_id = await executions.start(path)

    await step_started(client, execution_id)
    first.send_signal(signal.SIGTERM)  # drains for 10 s, then stops what still runs
    spawn("worker", "start", "--concurrency", "2")
    summary = await executions.wait(execution_id, timeout_s=90)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["long"]["result"] == "done"
    assert first.wait(timeout=30) is not None
    failed = [e for e in await store.events.events(execution_id) if e.type == "step.failed"]
    assert failed == []
