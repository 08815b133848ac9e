"""A cancel survives an orchestrator restart: a rebuilt execution that is being cancelled sends the
cancels of its running commands again, so a step whose cancel was lost does not run to its end."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from control_plane.stack import Stack
from tests.harness.polling import poll
from tests.integration.runtime.conftest import long_step_on_processes

pytestmark = pytest.mark.anyio


async def test_a_cancel_lost_with_its_worker_is_sent_again_by_a_restarted_orchestrator(
        client: Stack, spawn: Any) -> None:
    execution_id, server, worker = await long_step_on_processes(
        client, spawn, "import time; time.sleep(120); result = 'ran to its end'")
    executions, store = client.executions, client.store
    assert executions is not None and store is not None
    os.killpg(worker.pid, signal.SIGKILL)  # its command comes back to the next worker after ack_wait
    worker.wait(timeout=10)
    await executions.cancel(execution_id)  # broadcast to no worker: lost

    async def cancel_stored() -> bool:
        return any(e.type == "execution.cancel_requested" for e in await store.events.events(execution_id))
    await poll(cancel_stored, timeout_s=30, what="the cancel request in the log")
    os.killpg(server.pid, signal.SIGKILL)  # the cancels it kept sending are forgotten
    server.wait(timeout=10)

    spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    spawn("worker", "start", "--concurrency", "2")
    summary = await executions.wait(execution_id, timeout_s=60)  # not the step's 120 s
    assert summary["status"] == "cancelled", summary
    assert summary["steps"]["long"]["error"]["kind"] == "cancelled"
