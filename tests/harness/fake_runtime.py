"""Running the orchestrator and workers over the in-memory fakes (tests/harness/fake_bus.py,
tests/harness/fake_event_log.py): starting an execution as the control plane does, and running a
runtime component as a task that is stopped and awaited at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from engine.protocol.events import Event, encode_events
from tests.harness.fake_bus import FakeBus
from tests.harness.fake_event_log import FakeEventLog


async def start_execution(log: FakeEventLog, bus: FakeBus, text: str, *, path: str = "tests/fake",
                          payload: dict[str, Any] | None = None, execution_id: str | None = None) -> str:
    """What control_plane.services.executions.ExecutionService.start does: the execution's row, then its
    `execution.started` on the bus (the orchestrator records it)."""
    execution_id = execution_id or f"x{uuid.uuid4().hex[:12]}"
    await log.create_execution(execution_id, playbook_path=path, playbook_version=1, playbook_text=text,
                               payload=payload or {})
    started = Event(event_id=uuid.uuid4().hex, idempotency_key=f"{execution_id}:started",
                    execution_id=execution_id, type="execution.started",
                    payload={"playbook": text, "path": path, "version": 1, "payload": payload or {},
                             "parent_execution_id": None, "parent_step": None})
    await bus.publish_event(execution_id, started.idempotency_key, encode_events([started]))
    return execution_id


Runner = Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]]


@asynccontextmanager
async def running(bus: FakeBus, *runs: Runner) -> AsyncIterator[None]:
    """Run each `run(stop, ready)` (Orchestrator.run, Worker.run) as a task until the block ends; then
    stop them, wake their fetches, and await them and the core deliveries still running (an error of
    one is raised here). The bus stays open: another runtime may run on it next."""
    stop = asyncio.Event()
    tasks = []
    for run in runs:
        ready = asyncio.Event()
        task = asyncio.create_task(run(stop, ready))
        tasks.append(task)
        ready_or_done = asyncio.create_task(ready.wait())
        await asyncio.wait([ready_or_done, task], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        ready_or_done.cancel()
        if task.done():
            task.result()  # it failed while starting: say why
        assert ready.is_set(), f"{run} was not ready within 10 s"
    try:
        yield
    finally:
        stop.set()
        bus.wake()
        done, _ = await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            if task not in done:
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await bus.quiesce()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
