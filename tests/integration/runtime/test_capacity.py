"""Dispatch under capacity (issue 8): two pools, CPU and GPU steps, capacities read from the event log."""

from __future__ import annotations

import textwrap
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from control_plane.stack import Stack
from engine.plan.pools import parse_pools
from engine.protocol.events import Event
from engine.runtime.orchestrator import dispatch_commands
from tests.integration.runtime.conftest import stack_config_of

pytestmark = pytest.mark.anyio

POOLS = parse_pools(textwrap.dedent("""\
    pools:
      - {name: default, labels: [cpu], capacity: {cpu: 2}}
      - {name: gpu, labels: [gpu], capacity: {cpu: 2, gpu: 1}}
    """), "<test pools>")

@pytest.fixture
async def pooled(runtime_env: dict[str, str]) -> AsyncIterator[Stack]:
    """An orchestrator and two worker pools whose capacities come from the pools file."""
    async with Stack(stack_config_of(runtime_env, workers={"default": 4, "gpu": 4}, pools=POOLS)) as running:
        yield running


def playbook(name: str, body: str) -> str:
    return (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: tests/{name}}}\n"
            + textwrap.dedent(body))


async def run(stack: Stack, text: str) -> tuple[dict[str, Any], list[Event]]:
    assert stack.executions is not None and stack.store is not None
    registered = await stack.executions.register(text)
    execution_id = await stack.executions.start(registered.path)
    summary = await stack.executions.wait(execution_id, timeout_s=90)
    return summary, await stack.store.events.events(execution_id)


def peak_use(events: list[Event], units: dict[str, dict[str, int]]) -> dict[tuple[str, str], int]:
    """The most of each (pool, resource) held at one time, from the worker-side start and end of every
    command (inside the span the orchestrator counted it: it frees the units only on the outcome)."""
    spans: dict[str, list[datetime]] = defaultdict(list)
    where: dict[str, tuple[str, str]] = {}
    for event in events:
        if event.pool and event.command_id and event.step in units and event.type in (
                "step.started", "loop.item.succeeded", "loop.item.failed", "step.succeeded", "step.failed"):
            spans[event.command_id].append(event.timestamp)
            where[event.command_id] = (event.pool, event.step)
    peaks: dict[tuple[str, str], int] = {}
    for resource in {r for need in units.values() for r in need}:
        edges: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        for command_id, times in spans.items():
            pool, step = where[command_id]
            amount = units[step].get(resource, 0)
            edges[pool] += [(min(times), amount), (max(times), -amount)]
        for pool, pool_edges in edges.items():
            running = peak = 0
            for _, delta in sorted(pool_edges, key=lambda edge: (edge[0], edge[1])):  # ends first
                running += delta
                peak = max(peak, running)
            peaks[(pool, resource)] = peak
    return peaks


async def test_cpu_and_gpu_steps_run_on_their_pools_never_beyond_capacity(pooled: Stack) -> None:
    name = f"pools_{uuid.uuid4().hex[:8]}"
    sleep = "      code: |\n        import time\n        time.sleep(0.3)\n        result = x\n"
    text = playbook(name, (
        "workflow:\n"
        "  - step: prepare\n"
        "    loop: {in: \"{{ range(6) | list }}\", iterator: x, spec: {mode: parallel, max_in_flight: 6}}\n"
        "    spec: {resources: {cpu: 1}}\n"
        "    tool:\n      kind: python\n" + sleep +
        "    next: train\n"
        "  - step: train\n"
        "    loop: {in: \"{{ range(3) | list }}\", iterator: x, spec: {mode: parallel, max_in_flight: 3}}\n"
        "    spec: {resources: {gpu: 1, require: [gpu]}}\n"
        "    tool:\n      kind: python\n" + sleep))
    summary, events = await run(pooled, text)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["prepare"]["result"] == [0, 1, 2, 3, 4, 5]
    assert summary["steps"]["train"]["result"] == [0, 1, 2]
    trains = {e.pool for e in events if e.step == "train" and e.type == "loop.item.succeeded"}
    assert trains == {"gpu"}  # `require: [gpu]` routes it to the only pool with the label
    peaks = peak_use(events, {"prepare": {"cpu": 1}, "train": {"cpu": 1, "gpu": 1}})
    for (pool, resource), peak in peaks.items():
        capacity = POOLS.get(pool).units(resource)  # type: ignore[union-attr]
        assert peak <= capacity, f"pool {pool} held {resource}: {peak} > its capacity {capacity}"
    assert peaks[("gpu", "gpu")] == 1  # three train items, one gpu: one after another
    deferred = [e for e in events if e.type == "step.deferred"]
    assert deferred and all("capacity" in e.payload["reason"] for e in deferred)
    waited = {c for e in deferred for c in dispatch_commands(e)}
    dispatched = {c for e in events if e.type == "step.dispatched" for c in dispatch_commands(e)}
    assert waited <= dispatched  # every command that waited went out later
    items = [e for e in events if e.type == "loop.item.succeeded"]
    assert len(deferred) < len(waited) or len(waited) <= 1  # a round's waiting items share one event
    assert len(events) < 4 * len(items) + 16


async def test_a_step_no_pool_can_ever_run_fails_naming_the_missing_capacity(pooled: Stack) -> None:
    name = f"too_big_{uuid.uuid4().hex[:8]}"
    text = playbook(name, """\
        workflow:
          - step: huge
            spec: {resources: {gpu: 4}}
            tool: {kind: python, code: "result = 1"}
        """)
    summary, events = await run(pooled, text)
    assert summary["status"] == "failed"
    error = summary["steps"]["huge"]["error"]
    assert error["kind"] == "resource_exhausted"
    assert "gpu: 4" in error["message"] and "gpu" in error["message"]
    assert not any(e.type == "step.started" for e in events)  # never sent to a worker
