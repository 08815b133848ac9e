"""The orchestrator over the in-memory event log and bus, through its public entry points: it runs
(`Orchestrator.run`), an execution is started as the control plane starts one, the test plays the
worker (takes the commands from the pool's work queue and reports their outcomes on the event stream),
and the event log shows what happened. The last test runs a real Worker beside it instead."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from engine.protocol import subjects
from engine.protocol.commands import RunStep, decode_runs
from engine.protocol.events import Event, encode_events
from engine.protocol.results import ResultEnvelope
from engine.protocol.workers import WorkerHeartbeat
from engine.runtime.orchestrator import Orchestrator
from engine.runtime.step_runner import StepRunner
from engine.runtime.summary import summarize
from engine.runtime.worker import Worker
from engine.tools.base import Tool
from engine.tools.noop_tool import NoopTool
from tests.harness.fake_bus import FakeBus, FakeReader
from tests.harness.fake_event_log import FakeEventLog
from tests.harness.fake_runtime import running, start_execution
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio

TWO_STEPS = ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: two, path: tests/two}\n"
             "workflow:\n"
             "  - step: first\n    tool: {kind: noop, result: one}\n    next: second\n"
             "  - step: second\n    tool: {kind: noop, result: two}\n")



async def take(reader: FakeReader, count: int) -> list[RunStep]:
    """The next `count` commands of the pool (a message may carry several), acked as a worker would
    once it reported them; AssertionError when they do not come within 10 s."""
    commands: list[RunStep] = []
    for _ in range(20):
        for delivery in await reader.fetch(batch=count, timeout=0.5):
            commands.extend(decode_runs(delivery.data))
            await delivery.ack_nowait()
        if len(commands) >= count:
            break
    assert len(commands) == count, f"expected {count} commands, got {[c.step for c in commands]}"
    return commands


def outcome(command: RunStep, result: ResultEnvelope) -> Event:
    """The outcome a worker reports for the command (engine/runtime/step_runner.py's keys)."""
    ok = result.status == "ok"
    if command.loop_index is None:
        type_ = "step.succeeded" if ok else "step.failed"
    else:
        type_ = "loop.item.succeeded" if ok else "loop.item.failed"
    return Event(event_id=uuid.uuid4().hex, idempotency_key=f"{command.command_id}:outcome",
                 execution_id=command.execution_id, type=type_, step=command.step,  # type: ignore[arg-type]
                 command_id=command.command_id, run=command.run, attempt=1, loop_index=command.loop_index,
                 result=result)


async def report(bus: FakeBus, *events: Event, msg_id: str | None = None) -> None:
    await bus.publish_event(events[0].execution_id, msg_id or events[0].idempotency_key,
                            encode_events(list(events)))


async def ended(log: FakeEventLog, execution_id: str) -> str:
    await poll(lambda: log.executions[execution_id].ended, timeout_s=10, what="the execution to end")
    return log.executions[execution_id].status


def summary(log: FakeEventLog, execution_id: str) -> dict[str, Any]:
    return summarize(execution_id, log.executions[execution_id].events, None)


async def test_a_two_step_playbook_is_driven_to_completion_one_command_per_step_in_order() -> None:
    log, bus = FakeEventLog(), FakeBus()
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        execution_id = await start_execution(log, bus, TWO_STEPS)
        reader = await bus.command_consumer("default")
        [first] = await take(reader, 1)
        assert (first.step, first.execution_id) == ("first", execution_id)
        await report(bus, outcome(first, ResultEnvelope.ok("one")))
        [second] = await take(reader, 1)
        assert second.step == "second"
        await report(bus, outcome(second, ResultEnvelope.ok("two")))
        assert await ended(log, execution_id) == "completed"
        orchestrator_reader = await bus.event_consumer("orchestrator")
        await poll(lambda: orchestrator_reader.durable.pending() == 0, timeout_s=10,
                   what="every event message to be acked once stored")
    assert log.types(execution_id) == [
        ("execution.started", None), ("step.scheduled", "first"), ("step.succeeded", "first"),
        ("step.scheduled", "second"), ("step.succeeded", "second"), ("execution.completed", None)]
    assert [e.seq for e in log.executions[execution_id].events] == [1, 2, 3, 4, 5, 6]
    assert summary(log, execution_id)["steps"]["second"]["result"] == "two"
    assert [(pool, duplicate) for pool, _, _, duplicate in bus.commands] == [("default", False)] * 2
    assert await log.active_executions() == []


async def test_a_failed_step_without_a_handler_fails_the_execution_and_issues_nothing_after_it() -> None:
    log, bus = FakeEventLog(), FakeBus()
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        execution_id = await start_execution(log, bus, TWO_STEPS)
        reader = await bus.command_consumer("default")
        [first] = await take(reader, 1)
        await report(bus, outcome(first, ResultEnvelope.fail("python_exception", "it broke (test)",
                                                              retryable=False)))
        assert await ended(log, execution_id) == "failed"
        assert await reader.fetch(batch=1, timeout=0) == []
    types = log.types(execution_id)
    assert types[-1] == ("execution.failed", None)
    assert ("step.failed", "first") in types and ("step.scheduled", "second") not in types
    assert len(bus.commands) == 1


async def test_a_loop_issues_one_command_per_item_and_collects_the_results_in_input_order() -> None:
    text = ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: loop, path: tests/loop}\n"
            "workflow:\n"
            "  - step: fan_out\n"
            "    loop: {in: [10, 20, 30], iterator: item, spec: {mode: parallel}}\n"
            "    tool: {kind: noop, result: '{{ item }}'}\n")
    log, bus = FakeEventLog(), FakeBus()
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        execution_id = await start_execution(log, bus, text)
        reader = await bus.command_consumer("default")
        items = await take(reader, 3)
        assert sorted(c.loop_index for c in items if c.loop_index is not None) == [0, 1, 2]
        for command in reversed(items):  # finishing in another order than the items'
            await report(bus, outcome(command, ResultEnvelope.ok((command.loop_index or 0) * 100)))
        assert await ended(log, execution_id) == "completed"
    assert summary(log, execution_id)["steps"]["fan_out"]["result"] == [0, 100, 200]
    types = log.types(execution_id)
    assert types.count(("loop.item.succeeded", "fan_out")) == 3
    assert types[-1] == ("execution.completed", None)


async def test_an_outcome_reported_twice_is_recorded_once_and_the_next_step_is_issued_once() -> None:
    log, bus = FakeEventLog(), FakeBus()
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        execution_id = await start_execution(log, bus, TWO_STEPS)
        reader = await bus.command_consumer("default")
        [first] = await take(reader, 1)
        done = outcome(first, ResultEnvelope.ok("one"))
        await report(bus, done)
        await report(bus, done)  # the same message id: the bus drops it
        await report(bus, done, msg_id="outcomes:again")  # another message (packed): the log drops it
        [second] = await take(reader, 1)
        await report(bus, outcome(second, ResultEnvelope.ok("two")))
        assert await ended(log, execution_id) == "completed"
    assert [duplicate for _, key, _, duplicate in bus.events if key == done.idempotency_key] == [False, True]
    types = log.types(execution_id)
    assert types.count(("step.succeeded", "first")) == 1
    assert types.count(("step.scheduled", "second")) == 1
    assert len(bus.commands) == 2


async def test_a_restarted_orchestrator_publishes_the_pending_command_again_and_the_bus_drops_the_copy(
        ) -> None:
    log, bus = FakeEventLog(), FakeBus()
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        execution_id = await start_execution(log, bus, TWO_STEPS)
        reader = await bus.command_consumer("default")
        await poll(lambda: ("step.scheduled", "first") in log.types(execution_id), timeout_s=10,
                   what="first to be scheduled")
    # the same bus and log, a new orchestrator process
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        assert [(key, duplicate) for _, key, _, duplicate in bus.commands] == [
            (bus.commands[0][1], False), (bus.commands[0][1], True)]
        [first] = await take(reader, 1)  # one copy on the work queue
        await report(bus, outcome(first, ResultEnvelope.ok("one")))
        [second] = await take(reader, 1)
        await report(bus, outcome(second, ResultEnvelope.ok("two")))
        assert await ended(log, execution_id) == "completed"
    assert log.types(execution_id).count(("step.scheduled", "first")) == 1


async def test_an_orchestrator_and_a_worker_on_the_fakes_run_a_loop_and_the_step_after_it_to_completion(
        ) -> None:
    text = ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: both, path: tests/both}\n"
            "workload: {n: 4}\n"
            "workflow:\n"
            "  - step: double\n"
            "    loop: {in: '{{ range(workload.n) | list }}', iterator: x, spec: {mode: parallel}}\n"
            "    tool: {kind: noop, result: '{{ x * 2 }}'}\n"
            "    next: {arcs: [{step: total, when: \"{{ event.name == 'loop.done' }}\"}]}\n"
            "  - step: total\n"
            "    tool: {kind: noop, result: '{{ double | sum }}'}\n")
    log, bus = FakeEventLog(), FakeBus()

    class Tools:
        def get(self, kind: str) -> Tool:
            assert kind == "noop"
            return NoopTool()

    worker = Worker(bus=bus, runner=StepRunner(Tools()), pool="default", concurrency=2)
    async with running(bus, Orchestrator(bus=bus, events=log).run, worker.run):
        execution_id = await start_execution(log, bus, text)
        assert await ended(log, execution_id) == "completed"
    steps = summary(log, execution_id)["steps"]
    assert steps["double"]["result"] == [0, 2, 4, 6]
    assert steps["total"]["result"] == 12
    assert log.types(execution_id).count(("loop.item.succeeded", "double")) == 4
    assert bus.command_stream.messages == {}  # every command acked


async def test_a_reported_outcome_is_answered_ok_only_once_its_events_are_in_the_log() -> None:
    log, bus = FakeEventLog(), FakeBus()
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        execution_id = await start_execution(log, bus, TWO_STEPS)
        reader = await bus.command_consumer("default")
        [first] = await take(reader, 1)
        stored_when_answered: list[bool] = []
        report = encode_events([outcome(first, ResultEnvelope.ok("one"))])
        answer = await bus.report(report, execution_id=execution_id)
        answer.add_done_callback(lambda _: stored_when_answered.append(
            ("step.succeeded", "first") in log.types(execution_id)))
        assert await asyncio.wait_for(answer, 10) == "ok"
        assert stored_when_answered == [True]
        [second] = await take(reader, 1)  # the next step went out on the report, like on a stream event
        again = await bus.report(report, execution_id=execution_id, attempt=2)
        assert await asyncio.wait_for(again, 10) == "ok"  # sent again (its answer was lost): stored once
        await bus.report(encode_events([outcome(second, ResultEnvelope.ok("two"))]),
                         execution_id=execution_id)
        assert await ended(log, execution_id) == "completed"
    assert [t for t in log.types(execution_id) if t == ("step.succeeded", "first")] == [
        ("step.succeeded", "first")]


async def test_a_report_on_a_command_not_issued_yet_is_answered_retry() -> None:
    log, bus = FakeEventLog(), FakeBus()
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        execution_id = await start_execution(log, bus, TWO_STEPS)
        [first] = await take(await bus.command_consumer("default"), 1)
        stranger = first.model_copy(update={"command_id": "not-issued"})
        answer = await bus.report(encode_events([outcome(stranger, ResultEnvelope.ok("?"))]),
                                  execution_id=execution_id)
        assert (await asyncio.wait_for(answer, 10)).startswith("retry:")
    assert ("step.succeeded", "first") not in log.types(execution_id)


LOOP_OF_FOUR = ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: four, path: tests/four}\n"
                "workflow:\n"
                "  - step: items\n"
                "    loop: {in: '{{ [0, 1, 2, 3] }}', iterator: x, spec: {mode: parallel}}\n"
                "    spec: {resources: {cpu: 1}}\n"
                "    tool: {kind: noop, result: '{{ x }}'}\n")


async def one_cpu_worker(bus: FakeBus) -> None:
    """A worker of the default pool with one cpu for four slots (so admission, not its slots, bounds
    steps of one cpu), heard from whenever an orchestrator asks."""
    beat = WorkerHeartbeat(worker="w1", pool="default", capacity={"cpu": 1.0}, concurrency=4)

    async def answer(_: bytes) -> None:
        await bus.publish_core(subjects.worker_subject(bus.prefix), beat.model_dump_json().encode())

    await bus.subscribe_core(subjects.worker_ping_subject(bus.prefix), answer)


async def heard(bus: FakeBus, times: int) -> None:
    """Until the orchestrator has the worker's `times`-th heartbeat (it asks for one when it starts)."""
    subject = subjects.worker_subject(bus.prefix)
    await poll(lambda: sum(1 for s, _ in bus.core if s == subject) >= times, timeout_s=10,
               what="the worker's heartbeat")
    await bus.quiesce()  # delivered to the orchestrator's subscription


async def test_loop_items_waiting_for_capacity_share_one_event_and_still_wait_after_a_restart() -> None:
    log, bus = FakeEventLog(), FakeBus()
    await one_cpu_worker(bus)
    reader = await bus.command_consumer("default")
    async with running(bus, Orchestrator(bus=bus, events=log).run):
        await heard(bus, 1)
        execution_id = await start_execution(log, bus, LOOP_OF_FOUR)
        [first] = await take(reader, 1)
        await poll(lambda: ("step.deferred", "items") in log.types(execution_id), timeout_s=10,
                   what="the waiting items to be recorded")
    [deferred] = [e for e in log.executions[execution_id].events if e.type == "step.deferred"]
    assert len(deferred.payload["commands"]) == 3 and "capacity" in deferred.payload["reason"]
    async with running(bus, Orchestrator(bus=bus, events=log).run):  # a restarted orchestrator
        await heard(bus, 2)
        results = {first.loop_index: ResultEnvelope.ok(first.loop_index)}
        await report(bus, outcome(first, results[first.loop_index]))
        for _ in range(3):  # one at a time: the one cpu is held until each outcome
            [command] = await take(reader, 1)
            await report(bus, outcome(command, ResultEnvelope.ok(command.loop_index)))
        assert await ended(log, execution_id) == "completed"
    events = log.executions[execution_id].events
    dispatched = [c for e in events if e.type == "step.dispatched" for c in e.payload["commands"]]
    assert sorted(dispatched) == sorted(deferred.payload["commands"])  # each waiting item went out once
    assert summary(log, execution_id)["steps"]["items"]["result"] == [0, 1, 2, 3]
