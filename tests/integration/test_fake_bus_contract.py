"""The in-memory bus (tests/harness/fake_bus.py) keeps the promises of the real one that the runtime relies
on: each scenario here runs against a real nats-server through engine.bus.jetstream.Bus and against the
fake, and must come out the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.bus.jetstream import Bus
from tests.harness.fake_bus import FakeBus
from tests.harness.nats import fetch_all
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio



@pytest.fixture(params=["jetstream", "fake"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "fake":
        fake = FakeBus(prefix="contract")
        yield fake
        await fake.close()
        return
    real = await Bus.connect(request.getfixturevalue("nats_url"),
                             prefix=request.getfixturevalue("nats_prefix"))
    await real.ensure_streams()
    try:
        yield real
    finally:
        await real.delete_streams()
        await real.close()


async def test_a_second_publish_with_the_same_message_id_is_dropped_and_the_command_delivered_once(
        bus: Any) -> None:
    first = await bus.publish_command("a", "cmd-1", b"run")
    second = await bus.publish_command("a", "cmd-1", b"run again")
    assert (first.duplicate, second.duplicate, second.seq) == (False, True, first.seq)
    consumer = await bus.command_consumer("a")
    [delivery] = await fetch_all(consumer, 1)
    assert (delivery.data, delivery.num_delivered) == (b"run", 1)
    await delivery.ack()
    assert await consumer.fetch(batch=5, timeout=0.3) == []


async def test_a_command_given_back_comes_again_counted_and_a_terminated_one_never_comes_again(
        bus: Any) -> None:
    await bus.publish_command("a", "c1", b"one")
    await bus.publish_command("a", "c2", b"two")
    consumer = await bus.command_consumer("a")
    one, two = await fetch_all(consumer, 2)
    assert [one.data, two.data] == [b"one", b"two"]  # stream order
    await one.nak()
    await two.term()
    [again] = await fetch_all(consumer, 1)
    assert (again.data, again.num_delivered) == (b"one", 2)
    await again.ack_nowait()
    assert await consumer.fetch(batch=5, timeout=0.3) == []


async def test_a_command_not_acked_within_the_ack_wait_is_delivered_again(bus: Any) -> None:
    await bus.publish_command("a", "c1", b"one")
    consumer = await bus.command_consumer("a", ack_wait_s=0.5)
    [first] = await fetch_all(consumer, 1)
    assert await consumer.fetch(timeout=0.2) == []  # within the ack wait: not yet
    [again] = await fetch_all(consumer, 1)
    assert (again.data, first.num_delivered, again.num_delivered) == (b"one", 1, 2)
    await again.ack()


async def test_every_durable_event_reader_sees_every_event_in_order_from_its_first_unacked(bus: Any) -> None:
    for i in range(3):
        await bus.publish_event("x1", f"e{i}", b"%d" % i)
    left, right = await bus.event_consumer("left"), await bus.event_consumer("right")
    for consumer in (left, right):
        got = await fetch_all(consumer, 3)
        assert [d.data for d in got] == [b"0", b"1", b"2"]
        await got[0].ack()
        await got[1].ack()
    await bus.publish_event("x1", "e3", b"3")
    # a new reader of a durable starts where the durable stands: the unacked one is due after its ack wait
    assert [d.data for d in await fetch_all(await bus.event_consumer("left"), 1)] == [b"3"]


async def test_a_core_broadcast_reaches_each_subscriber_of_its_subject(bus: Any) -> None:
    got: list[bytes] = []
    done = asyncio.Event()

    async def on_cancel(data: bytes) -> None:
        got.append(data)
        done.set()

    subscription = await bus.subscribe_cancel(on_cancel)
    await bus.publish_cancel(b"stop c1")
    await asyncio.wait_for(done.wait(), 5)
    await subscription.unsubscribe()
    assert got == [b"stop c1"]


async def test_a_report_nobody_reads_is_answered_absent(bus: Any) -> None:
    answer = await bus.report(b'{"a": 1}', execution_id="x1")
    assert await asyncio.wait_for(answer, 10) == "absent"


async def test_a_report_is_read_with_its_attempt_and_answered_by_how_it_is_settled(bus: Any) -> None:
    reader = await bus.event_reader("orchestrator")
    try:
        answers = [await bus.report(f"r{i}".encode(), execution_id="x1", attempt=i + 1) for i in range(3)]
        taken = await fetch_all(reader, 3)
        assert [(r.data, r.num_delivered) for r in taken] == [(b"r0", 1), (b"r1", 2), (b"r2", 3)]
        await taken[0].ack_nowait()
        await taken[1].nak(delay_s=0.5)
        await taken[2].term()
        assert await asyncio.wait_for(asyncio.gather(*answers), 10) == ["ok", "retry:0.5", "drop"]
    finally:
        await reader.close()


async def test_the_event_reader_gives_reports_and_stream_events_and_a_report_wakes_a_waiting_fetch(
        bus: Any) -> None:
    reader = await bus.event_reader("orchestrator")
    try:
        await bus.publish_event("x1", "e1", b"stored")
        answer = await bus.report(b"reported", execution_id="x1")
        got = await fetch_all(reader, 2)
        assert sorted(d.data for d in got) == [b"reported", b"stored"]
        waiting = asyncio.ensure_future(reader.fetch(batch=8, timeout=60))
        await asyncio.sleep(0)  # the fetch waits now
        second = await bus.report(b"late", execution_id="x1")
        [late] = await asyncio.wait_for(waiting, 10)  # woken by the report, not by the 60 s timeout
        assert late.data == b"late"
        for delivery in [*got, late]:
            await delivery.ack_nowait()
        assert await asyncio.wait_for(asyncio.gather(answer, second), 10) == ["ok", "ok"]
    finally:
        await reader.close()


async def test_a_closed_reader_answers_its_unread_reports_retry_and_later_ones_find_nobody(bus: Any) -> None:
    reader = await bus.event_reader("orchestrator")
    unread = await bus.report(b"unread", execution_id="x1")
    await poll(lambda: reader.reports_waiting == 1, timeout_s=10, what="the report to reach the reader")
    await reader.close()
    assert (await asyncio.wait_for(unread, 10)).startswith("retry:")
    assert await asyncio.wait_for(await bus.report(b"after", execution_id="x1"), 10) == "absent"
