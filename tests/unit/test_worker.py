"""A worker over the in-memory bus (tests/harness/fake_bus.py): it takes commands from its pool's work
queue, runs them with its tools, reports their outcomes to the orchestrator, and acks the command's
message only once the report is answered (stored). The fake bus answers reports itself here
(`answer_reports`), as an orchestrator that stores everything would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.protocol.commands import RunStep, encode_runs
from engine.protocol.events import Event, decode_events
from engine.protocol.results import ResultEnvelope
from engine.runtime.step_runner import StepRunner
from engine.runtime.worker import Worker
from engine.tools.base import Tool, ToolCall
from engine.tools.noop_tool import NoopTool
from tests.harness.fake_bus import FakeBus, FakeDurable
from tests.harness.fake_runtime import running
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio



@dataclass
class Counting:
    """Counts its runs; returns `result`, or waits for `release` first when one is given."""

    kind: str = "count"
    runs: int = 0
    release: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, call: ToolCall) -> ResultEnvelope:
        self.runs += 1
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        if call.config.get("fail"):
            return ResultEnvelope.fail("python_exception", "ZeroDivisionError: division by zero",
                                       retryable=False)
        return ResultEnvelope.ok({"runs": self.runs})


class Tools:
    def __init__(self, *tools: Any) -> None:
        self._tools: dict[str, Tool] = {tool.kind: tool for tool in (NoopTool(), *tools)}

    def get(self, kind: str) -> Tool:
        return self._tools[kind]


def command(command_id: str, task: dict[str, Any], loop_index: int | None = None) -> RunStep:
    return RunStep(command_id=command_id, execution_id="x1", step="work", run=1, pool="default",
                   tasks=[task], loop_index=loop_index)


def new_worker(bus: FakeBus, *tools: Any, **options: Any) -> Worker:
    return Worker(bus=bus, runner=StepRunner(Tools(*tools)), pool="default", **options)


def published(bus: FakeBus) -> list[Event]:
    """Every event the worker published that the stream took (duplicates dropped), then every event it
    reported, in order."""
    stored = [data for _, _, data, duplicate in bus.events if not duplicate]
    return [event for data in [*stored, *(data for data, _ in bus.reports)] for event in decode_events(data)]


def outcomes(bus: FakeBus) -> dict[str, Event]:
    return {e.command_id or "": e for e in published(bus) if e.type in ("step.succeeded", "step.failed",
                                                                         "loop.item.succeeded")}


async def work_queue(bus: FakeBus) -> FakeDurable:
    return (await bus.command_consumer("default")).durable


async def test_a_command_is_run_with_its_tool_and_its_outcome_reported_then_its_message_acked() -> None:
    bus = FakeBus(answer_reports="ok")
    async with running(bus, new_worker(bus).run):
        await bus.publish_command("default", "c1", encode_runs([
            command("c1", {"kind": "noop", "result": {"answer": 42}}).model_dump_json().encode()]))
        queue = await work_queue(bus)
        await poll(lambda: queue.settled, timeout_s=10, what="the command's message to be settled")
    [outcome] = outcomes(bus).values()
    assert (outcome.type, outcome.idempotency_key, outcome.step) == ("step.succeeded", "c1:outcome", "work")
    assert outcome.result is not None and outcome.result.data == {"answer": 42}
    assert [e.type for e in published(bus)] == ["step.started", "step.succeeded"]  # one report
    assert bus.events == [] and len(bus.reports) == 1  # nothing stored on the event stream: one hop
    assert queue.settled == [("ack", "c1", 1)]
    assert bus.command_stream.messages == {}  # a work queue forgets an acked command


async def test_a_message_of_several_commands_runs_each_and_is_acked_once_after_all_outcomes_are_out() -> None:
    bus = FakeBus(answer_reports="ok")
    counting = Counting()
    runs = [command(f"c{i}", {"kind": "count"}, loop_index=i).model_dump_json().encode() for i in range(3)]
    async with running(bus, new_worker(bus, counting, concurrency=4).run):
        await bus.publish_command("default", "packed", encode_runs(runs))
        queue = await work_queue(bus)
        await poll(lambda: queue.settled, timeout_s=10, what="the message to be settled")
    assert sorted(outcomes(bus)) == ["c0", "c1", "c2"]
    assert counting.runs == 3
    assert queue.settled == [("ack", "packed", 1)]


async def test_a_failing_tool_is_reported_as_the_steps_failure_and_the_command_still_acked() -> None:
    bus = FakeBus(answer_reports="ok")
    async with running(bus, new_worker(bus, Counting()).run):
        await bus.publish_command("default", "c1", encode_runs([
            command("c1", {"kind": "count", "fail": True}).model_dump_json().encode()]))
        queue = await work_queue(bus)
        await poll(lambda: queue.settled, timeout_s=10, what="the command's message to be settled")
    outcome = outcomes(bus)["c1"]
    assert outcome.type == "step.failed"
    assert outcome.result is not None and outcome.result.error is not None
    assert outcome.result.error.kind == "python_exception"
    assert queue.settled == [("ack", "c1", 1)]


async def test_a_command_sent_again_after_its_outcome_is_out_is_not_run_again_and_its_outcome_offered_again(
        ) -> None:
    bus = FakeBus(answer_reports="ok")
    counting = Counting()
    data = encode_runs([command("c1", {"kind": "count"}).model_dump_json().encode()])
    async with running(bus, new_worker(bus, counting).run):
        queue = await work_queue(bus)
        await bus.publish_command("default", "c1", data)
        await poll(lambda: queue.settled, timeout_s=10, what="the first copy to be settled")
        # an orchestrator that rebuilt from the log sends it again, in a message of another id
        await bus.publish_command("default", "runs:again", data)
        await poll(lambda: len(queue.settled) == 2, timeout_s=10, what="the second copy to be settled")
        await poll(lambda: len(bus.reports) == 2, timeout_s=10, what="the outcome to be offered again")
    assert counting.runs == 1
    assert queue.settled == [("ack", "c1", 1), ("ack", "runs:again", 1)]
    assert bus.reports[0] == bus.reports[1]  # the same events: the log keeps each key once


async def test_a_malformed_command_message_is_terminated_and_never_delivered_again() -> None:
    bus = FakeBus(answer_reports="ok")
    async with running(bus, new_worker(bus).run):
        await bus.publish_command("default", "junk", b"{not a command")
        queue = await work_queue(bus)
        await poll(lambda: queue.settled, timeout_s=10, what="the message to be settled")
    assert queue.settled == [("term", "junk", 1)]
    assert queue.pending() == 0 and bus.events == [] and bus.reports == []


async def test_a_worker_that_stops_mid_step_gives_the_command_back_and_another_worker_runs_it() -> None:
    bus = FakeBus(answer_reports="ok")
    stuck = Counting(release=asyncio.Event())
    data = encode_runs([command("c1", {"kind": "count"}).model_dump_json().encode()])
    async with running(bus, new_worker(bus, stuck, drain_s=0).run):
        await bus.publish_command("default", "c1", data)
        await asyncio.wait_for(stuck.started.wait(), 10)
    queue = await work_queue(bus)
    assert queue.settled == [("nak", "c1", 1)] and bus.reports == []  # given back, not acked
    counting = Counting()
    async with running(bus, new_worker(bus, counting).run):
        await poll(lambda: len(queue.settled) == 2, timeout_s=10, what="the command to run again")
    assert queue.settled[-1] == ("ack", "c1", 2)  # its second delivery
    assert counting.runs == 1 and list(outcomes(bus)) == ["c1"]


async def test_an_outcome_no_orchestrator_answers_is_sent_again_and_its_command_acked_only_once_stored(
        ) -> None:
    bus = FakeBus()  # no orchestrator reads reports: each is answered `absent`
    data = encode_runs([command("c1", {"kind": "noop", "result": 1}).model_dump_json().encode()])
    async with running(bus, new_worker(bus).run):
        queue = await work_queue(bus)
        await bus.publish_command("default", "c1", data)
        await poll(lambda: len(bus.reports) >= 2, timeout_s=10, what="the outcome to be sent again")
        assert [action for action, _, _ in queue.settled if action != "wpi"] == []  # kept, not acked
        bus.answer_reports = "ok"  # an orchestrator takes over
        await poll(lambda: ("ack", "c1", 1) in queue.settled, timeout_s=10, what="the command to be acked")
    attempts = [attempt for _, attempt in bus.reports]
    assert attempts == list(range(1, len(attempts) + 1))  # each sending counted
    assert len({data for data, _ in bus.reports}) == 1  # the same outcome every time


async def test_an_outcome_the_orchestrator_asks_to_send_later_is_sent_again_after_that_delay() -> None:
    bus = FakeBus(answer_reports="retry:0.05")  # its command is not issued yet: send it again later
    data = encode_runs([command("c1", {"kind": "noop"}).model_dump_json().encode()])
    async with running(bus, new_worker(bus).run):
        queue = await work_queue(bus)
        await bus.publish_command("default", "c1", data)
        await poll(lambda: len(bus.reports) >= 3, timeout_s=10, what="the outcome to be sent again")
        bus.answer_reports = "ok"
        await poll(lambda: ("ack", "c1", 1) in queue.settled, timeout_s=10, what="the command to be acked")
    assert [e.type for e in outcomes(bus).values()] == ["step.succeeded"]


async def test_an_outcome_the_orchestrator_drops_is_not_sent_again_and_its_command_is_acked() -> None:
    bus = FakeBus(answer_reports="drop")  # e.g. a late report of an execution that ended
    data = encode_runs([command("c1", {"kind": "noop"}).model_dump_json().encode()])
    async with running(bus, new_worker(bus).run):
        queue = await work_queue(bus)
        await bus.publish_command("default", "c1", data)
        await poll(lambda: queue.settled, timeout_s=10, what="the command to be settled")
    assert queue.settled == [("ack", "c1", 1)] and len(bus.reports) == 1


async def test_an_ack_held_for_company_is_still_sent_when_the_worker_stops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.runtime.worker.ACK_HOLD_S", 60.0)  # no company comes: held till the stop
    bus = FakeBus(answer_reports="ok")
    async with running(bus, new_worker(bus).run):
        await bus.publish_command("default", "c1", encode_runs([
            command("c1", {"kind": "noop"}).model_dump_json().encode()]))
        await poll(lambda: bus.reports, timeout_s=10, what="the outcome to be reported")
    queue = await work_queue(bus)
    assert queue.settled == [("ack", "c1", 1)]
