"""A worker told to stop (SIGTERM) gives back the steps still running after its drain time: they run
again on another worker, and the execution completes. They are not reported as cancelled."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from control_plane.stack import Stack
from tests.integration.runtime.conftest import long_step_on_processes

pytestmark = pytest.mark.anyio


async def test_a_stopping_worker_gives_back_a_step_longer_than_its_drain_and_another_worker_runs_it(
        client: Stack, spawn: Any) -> None:
    execution_id, _, first = await long_step_on_processes(
        client, spawn, "import time; time.sleep(12); result = 'done'")
    executions, store = client.executions, client.store
    assert executions is not None and store is not None
    first.send_signal(signal.SIGTERM)  # drains for 10 s, then stops what still runs
    spawn("worker", "start", "--concurrency", "2")
    summary = await executions.wait(execution_id, timeout_s=90)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["long"]["result"] == "done"
    assert first.wait(timeout=30) is not None
    failed = [e for e in await store.events.events(execution_id) if e.type == "step.failed"]
    assert failed == []
