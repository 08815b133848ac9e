"""A worker keeps the messages it holds alive with `in_progress`: every third of ack_wait, and a cursor
loop's claimer (spec 6.1) every frame.heartbeat_seconds when that is sooner."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from engine.protocol.commands import RunStep
from engine.runtime.worker import Worker, _Message
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio



class FakeDelivery:
    def __init__(self, data: bytes = b"") -> None:
        self.data = data
        self.num_delivered = 1
        self.beats = 0

    async def in_progress(self) -> None:
        self.beats += 1


def claimer_command(heartbeat_s: float) -> RunStep:
    return RunStep(command_id="c1", execution_id="e1", step="work", run=1, pool="default",
                   tasks=[{"kind": "noop"}], iterator="job",
                   cursor={"claimer": 0, "kind": "postgres", "auth": "db", "claim": "SELECT 1",
                           "max_rows": 1, "heartbeat_s": heartbeat_s})


def worker(ack_wait_s: float) -> Worker:
    return Worker(bus=None, runner=None, ack_wait_s=ack_wait_s)  # type: ignore[arg-type]


def test_a_message_with_a_claimer_takes_its_frames_heartbeat() -> None:
    w = worker(30.0)
    backlog: deque[Any] = deque()
    w._receive(FakeDelivery(claimer_command(0.5).model_dump_json().encode()), backlog, set())  # type: ignore[arg-type]
    ordinary = claimer_command(1.0).model_copy(update={"cursor": None, "command_id": "c2"})
    w._receive(FakeDelivery(ordinary.model_dump_json().encode()), backlog, set())  # type: ignore[arg-type]
    assert sorted((m.every is None, m.every) for m in w._messages) == [(False, 0.5), (True, None)]


async def test_a_claimers_message_is_kept_alive_at_its_heartbeat_and_others_at_a_third_of_ack_wait() -> None:
    w = worker(30.0)  # ordinary messages: every 10 s
    claimer, ordinary = FakeDelivery(), FakeDelivery()
    w._messages.add(_Message(claimer, 1, every=0.3))  # type: ignore[arg-type]
    w._messages.add(_Message(ordinary, 1))  # type: ignore[arg-type]
    beating = asyncio.create_task(w._in_progress())
    try:
        await poll(lambda: claimer.beats >= 3, timeout_s=10, what="three heartbeats of the claimer")
    finally:
        beating.cancel()
    assert ordinary.beats == 0
