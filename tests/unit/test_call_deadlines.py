"""A playbook call's deadline is armed again from the child's `execution.started` when resuming."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.bus.jetstream import BusError
from engine.protocol.events import Event
from engine.runtime.orchestrator import Orchestrator
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio

CHILD = ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: c}\n"
         "workflow:\n  - {step: s, tool: {kind: noop}}\n")



class Log:
    """An event log holding one running child execution."""

    def __init__(self, deadline: datetime) -> None:
        self.history = [Event(
            event_id=uuid.uuid4().hex, idempotency_key="child-1:started", execution_id="child-1",
            type="execution.started", seq=1,
            payload={"playbook": CHILD, "path": "c", "parent_execution_id": "parent-1",
                     "parent_step": "call", "parent_command_id": "cmd-1", "call_timeout_s": 5.0,
                     "call_deadline": deadline.isoformat()})]

    async def active_executions(self) -> list[str]:
        return ["child-1"]

    async def events(self, execution_id: str, **_: Any) -> list[Event]:
        return list(self.history) if execution_id == "child-1" else []

    async def append(self, events: Sequence[Event]) -> list[Event]:
        return list(events)


class Bus:
    """Records the events published; the first `failures` publishes fail as when NATS is away."""

    prefix = "t"

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.events: list[tuple[float, Event]] = []

    async def publish_event(self, execution_id: str, key: str, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise BusError("nats is away", transient=True)
        self.events.append((time.monotonic(), Event.model_validate_json(data)))

    async def publish_command(self, pool: str, msg_id: str, data: bytes) -> None:
        return None

    def cancels(self) -> list[Event]:
        return [e for _, e in self.events if e.type == "execution.cancel_requested"]


async def resumed(bus: Bus, deadline: datetime) -> Orchestrator:
    orchestrator = Orchestrator(bus=bus, events=Log(deadline))  # type: ignore[arg-type]
    await orchestrator.resume()
    return orchestrator


async def test_a_child_whose_call_deadline_passed_while_no_orchestrator_ran_is_cancelled_at_once() -> None:
    bus = Bus()
    await resumed(bus, datetime.now(UTC) - timedelta(seconds=30))
    [cancel] = await poll(bus.cancels, timeout_s=5, what="the child's cancel")
    assert cancel.execution_id == "child-1" and cancel.idempotency_key == "cmd-1:timeout"
    assert cancel.payload == {"reason": "the playbook call of step 'call' timed out after 5.0 s",
                              "timeout": True}


async def test_a_resumed_child_is_cancelled_at_its_recorded_deadline_not_a_full_timeout_later() -> None:
    bus = Bus()
    deadline = datetime.now(UTC) + timedelta(seconds=0.6)
    at = time.monotonic() + 0.6
    await resumed(bus, deadline)
    await poll(bus.cancels, timeout_s=5, what="the child's cancel")
    fired = next(t for t, e in bus.events if e.type == "execution.cancel_requested")
    assert at - 0.05 <= fired < at + 1.0


async def test_a_cancel_that_nats_refuses_is_tried_again() -> None:
    bus = Bus(failures=2)
    await resumed(bus, datetime.now(UTC))
    [cancel] = await poll(bus.cancels, timeout_s=5, what="the child's cancel after NATS answers again")
    assert cancel.payload["timeout"] is True


async def test_an_orchestrator_resumed_twice_arms_one_timer_per_child() -> None:
    bus = Bus()
    orchestrator = await resumed(bus, datetime.now(UTC) + timedelta(seconds=0.3))
    orchestrator._live.clear()  # what a rebuild does before it resumes again
    await orchestrator.resume()
    await poll(bus.cancels, timeout_s=5, what="the child's cancel")
    await poll(lambda: not orchestrator._calls._tasks and not orchestrator._calls._timers, timeout_s=5,
               what="every timer and its task to end")
    assert len(bus.cancels()) == 1
