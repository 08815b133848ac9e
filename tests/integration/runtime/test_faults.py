"""Faults with real processes: a worker SIGKILLed mid-step, an orchestrator restarted mid-execution."""

from __future__ import annotations

import os
import signal
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from control_plane.stack import Stack
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio

WAITING_STEP = """\
    tool:
      kind: python
      input: {marker: "{{ workload.marker }}", release: "{{ workload.release }}"}
      code: |
        import os, time
        with open(marker, "a") as f:
            f.write("x")
        deadline = time.time() + 60
        while not os.path.exists(release) and time.time() < deadline:
            time.sleep(0.05)
        result = {"runs": len(open(marker).read()), "released": os.path.exists(release)}
"""


def playbook(name: str, body: str) -> str:
    return (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: tests/{name}}}\n"
            f"workload: {{marker: '', release: ''}}\n" + textwrap.dedent(body))


async def start(client: Stack, text: str, payload: dict[str, Any]) -> str:
    assert client.executions is not None
    registered = await client.executions.register(text)
    return await client.executions.start(registered.path, payload=payload)


def count(events: list[Any], type_: str, step: str) -> int:
    return sum(1 for e in events if e.type == type_ and e.step == step)


async def test_a_worker_killed_mid_step_has_its_step_rerun_and_recorded_exactly_once(
        client: Stack, spawn: Any, tmp_path: Path) -> None:
    name = f"sigkill_{uuid.uuid4().hex[:8]}"
    text = playbook(name, "workflow:\n  - step: slow\n" + WAITING_STEP + "    next: after\n"
                    "  - step: after\n    tool: {kind: noop, result: done}\n")
    spawn("server", "start")
    first = spawn("worker", "start", "--concurrency", "2")
    marker, release = tmp_path / "marker", tmp_path / "release"
    execution_id = await start(client, text, {"marker": str(marker), "release": str(release)})
    await poll(marker.exists, timeout_s=60, what="the first worker to start the step")
    store = client.store.events  # type: ignore[union-attr]

    async def start_recorded() -> bool:  # reported once the step has run for started_delay_s
        return count(await store.events(execution_id), "step.started", "slow") == 1

    await poll(start_recorded, timeout_s=30, what="the first start of the step to be recorded")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    release.touch()
    spawn("worker", "start", "--concurrency", "2")
    assert client.executions is not None
    summary = await client.executions.wait(execution_id, timeout_s=90)
    assert summary["status"] == "completed"
    assert summary["steps"]["slow"]["result"] == {"runs": 2, "released": True}
    events = await client.store.events.events(execution_id)  # type: ignore[union-attr]
    assert count(events, "step.started", "slow") == 2  # the command was delivered again
    assert count(events, "step.succeeded", "slow") == 1  # and its outcome recorded once
    assert count(events, "step.succeeded", "after") == 1
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_restarted_orchestrator_rebuilds_from_the_log_and_finishes_the_execution(
        client: Stack, spawn: Any, tmp_path: Path) -> None:
    name = f"restart_{uuid.uuid4().hex[:8]}"
    text = playbook(name, "workflow:\n  - step: first\n    tool: {kind: noop, result: 1}\n    next: wait\n"
                    "  - step: wait\n" + WAITING_STEP + "    next: last\n"
                    "  - step: last\n    tool: {kind: noop, result: 3}\n")
    orchestrator = spawn("server", "start")
    spawn("worker", "start", "--concurrency", "2")
    marker, release = tmp_path / "marker", tmp_path / "release"
    execution_id = await start(client, text, {"marker": str(marker), "release": str(release)})
    await poll(marker.exists, timeout_s=60, what="the waiting step to start")
    os.killpg(orchestrator.pid, signal.SIGKILL)
    orchestrator.wait(timeout=10)
    release.touch()  # the step ends while no orchestrator runs: its outcome waits in JetStream
    spawn("server", "start")
    assert client.executions is not None
    summary = await client.executions.wait(execution_id, timeout_s=90)
    assert summary["status"] == "completed"
    events = await client.store.events.events(execution_id)  # type: ignore[union-attr]
    for step in ("first", "wait", "last"):
        assert count(events, "step.scheduled", step) == 1, step
        assert count(events, "step.succeeded", step) == 1, step
    assert sum(1 for e in events if e.type == "execution.completed") == 1
