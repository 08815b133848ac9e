"""A fast step's `step.started` travels with its outcome; a slow step reports it while it runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from engine.protocol.commands import RunStep
from engine.protocol.events import Event, decode_events, encode_events, join_events, random_event_id
from engine.protocol.results import ResultEnvelope
from engine.runtime.step_runner import StepRunner
from engine.tools.base import Tool, ToolCall

pytestmark = pytest.mark.anyio



@dataclass
class SleepTool:
    kind: str = "sleep"

    async def run(self, call: ToolCall) -> ResultEnvelope:
        await asyncio.sleep(float(call.config.get("seconds", 0)))
        return ResultEnvelope.ok({"slept": call.config.get("seconds")})


class Tools:
    def get(self, kind: str) -> Tool:
        return SleepTool()


def command(seconds: float) -> RunStep:
    return RunStep(command_id="c1", execution_id="x1", step="nap", run=1, pool="default",
                   tasks=[{"kind": "sleep", "seconds": seconds}])


async def run(seconds: float, delay_s: float) -> tuple[list[Event], list[Event]]:
    reported: list[Event] = []

    async def report(event: Event) -> None:
        reported.append(event)

    outcome = await StepRunner(Tools(), started_delay_s=delay_s).run(command(seconds), report)
    return reported, outcome.events


async def test_a_step_that_ends_within_the_delay_returns_its_start_with_its_outcome() -> None:
    reported, events = await run(0.0, delay_s=5.0)
    assert reported == []
    assert [e.type for e in events] == ["step.started", "step.succeeded"]
    assert events[1].result is not None and events[1].result.data == {"slept": 0.0}


async def test_a_step_slower_than_the_delay_reports_its_start_while_it_runs() -> None:
    reported, events = await run(0.3, delay_s=0.01)
    assert [e.type for e in reported] == ["step.started"]
    assert [e.type for e in events] == ["step.succeeded"]
    assert reported[0].timestamp <= events[0].timestamp


async def test_a_zero_delay_reports_the_start_at_once() -> None:
    reported, events = await run(0.0, delay_s=0)
    assert [e.type for e in reported] == ["step.started"]
    assert [e.type for e in events] == ["step.succeeded"]


def test_one_message_carries_one_event_as_an_object_and_several_as_an_array_in_order() -> None:
    first = Event(event_id="a", idempotency_key="c1:started:1", execution_id="x1", type="step.started")
    second = Event(event_id="b", idempotency_key="c1:outcome", execution_id="x1", type="step.succeeded")
    assert encode_events([first]).startswith(b"{")
    assert decode_events(encode_events([first])) == [first]
    assert decode_events(encode_events([first, second])) == [first, second]
    with pytest.raises(ValueError):
        decode_events(b'[{"type": "step.started"}]')


def test_messages_joined_are_the_bytes_of_all_their_events_encoded_together() -> None:
    events = [Event(event_id=str(i), idempotency_key=f"c{i}:outcome", execution_id="x", type="step.succeeded")
              for i in range(4)]
    parts = [encode_events(events[:2]), encode_events([events[2]]), encode_events([events[3]])]
    assert join_events(parts) == encode_events(events)
    assert join_events([parts[1]]) == parts[1]
    assert decode_events(join_events(parts)) == events


def test_random_event_ids_have_uuid4_hex_form_and_do_not_repeat() -> None:
    import uuid

    ids = [random_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:200]:
        parsed = uuid.UUID(value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)


def test_a_forked_child_makes_other_event_ids_than_its_parent() -> None:
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, random_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != random_event_id()
