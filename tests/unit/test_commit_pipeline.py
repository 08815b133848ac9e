"""The orchestrator's commit pipeline (engine/runtime/commits.py) over the in-memory event log and bus:
batches reach the log in the order they were handed in, a batch's messages are acked and its
after-commit work runs only once its events are stored, duplicates are stored once, and a failed
append gives every queued batch back to the bus."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.protocol.events import Event, encode_events
from engine.runtime.commits import NAK_DELAY_S, CommitPipeline, Handled
from tests.harness.fake_bus import FakeBus, FakeDelivery, FakeReader
from tests.harness.fake_event_log import FakeEventLog

pytestmark = pytest.mark.anyio

X = "x1"



def event(key: str, type_: str = "step.started", step: str = "s") -> Event:
    return Event(event_id=uuid.uuid4().hex, idempotency_key=key, execution_id=X, type=type_,  # type: ignore[arg-type]
                 step=step)


async def log_with_execution() -> FakeEventLog:
    log = FakeEventLog()
    await log.create_execution(X, playbook_path="p", playbook_version=1, playbook_text="", payload={})
    return log


async def delivered(bus: FakeBus, reader: FakeReader, *keys: str) -> list[FakeDelivery]:
    """The events published on the bus and delivered to the reader, one message each."""
    for key in keys:
        await bus.publish_event(X, key, encode_events([event(key)]))
    deliveries = await reader.fetch(batch=len(keys), timeout=0)
    assert [d.msg_id for d in deliveries] == list(keys)
    return deliveries


async def test_batches_are_stored_in_the_order_they_were_handed_in_numbered_without_gaps() -> None:
    log = await log_with_execution()
    pipeline = CommitPipeline(log)
    for batch in (["a", "b"], ["c"], ["d", "e", "f"]):
        await pipeline.submit(Handled([event(key) for key in batch]))
    await pipeline.flush()
    stored = await log.events(X)
    assert [(e.idempotency_key, e.seq) for e in stored] == [
        ("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5), ("f", 6)]
    await pipeline.close()


async def test_batches_that_queue_up_while_the_log_is_busy_go_in_one_append() -> None:
    log = await log_with_execution()
    log.hold = asyncio.Event()
    pipeline = CommitPipeline(log, group_window_s=0)
    await pipeline.submit(Handled([event("first")]))
    await asyncio.wait_for(log.entered.wait(), 5)  # the first append is under way, and waits
    for key in ("second", "third", "fourth"):
        await pipeline.submit(Handled([event(key)]))
    assert pipeline.uncommitted(X)
    log.hold.set()
    await pipeline.flush()
    assert log.appends == [1, 3]  # group commit: the three that waited went together
    assert [e.idempotency_key for e in await log.events(X)] == ["first", "second", "third", "fourth"]
    assert not pipeline.uncommitted(X)
    await pipeline.close()


async def test_a_batchs_messages_are_acked_and_its_after_commit_work_runs_only_once_its_events_are_stored(
        ) -> None:
    log = await log_with_execution()
    bus = FakeBus()
    reader = await bus.event_consumer("orchestrator")
    deliveries = await delivered(bus, reader, "a", "b")
    seen_by_after: list[list[str]] = []

    async def after() -> None:
        seen_by_after.append([e.idempotency_key for e in await log.events(X)])

    log.hold = asyncio.Event()
    pipeline = CommitPipeline(log)
    await pipeline.submit(Handled([event("a"), event("b")], deliveries=deliveries, after=[after]))
    await asyncio.wait_for(log.entered.wait(), 5)
    assert reader.durable.settled == [] and seen_by_after == []  # the append has not returned yet
    log.hold.set()
    await pipeline.flush()
    assert seen_by_after == [["a", "b"]]
    assert reader.durable.settled == [("ack", "a", 1), ("ack", "b", 1)]
    assert reader.durable.pending() == 0
    await pipeline.close()


async def test_events_whose_keys_are_stored_already_are_stored_once_and_their_messages_still_acked() -> None:
    log = await log_with_execution()
    bus = FakeBus()
    reader = await bus.event_consumer("orchestrator")
    pipeline = CommitPipeline(log)
    await pipeline.submit(Handled([event("a"), event("b")]))
    await pipeline.flush()
    again = await delivered(bus, reader, "b")  # a redelivered message whose event was stored before
    await pipeline.submit(Handled([event("b"), event("c"), event("c")], deliveries=again))
    await pipeline.flush()
    assert [(e.idempotency_key, e.seq) for e in await log.events(X)] == [("a", 1), ("b", 2), ("c", 3)]
    assert reader.durable.settled == [("ack", "b", 1)]
    await pipeline.close()


async def test_a_failed_append_gives_every_queued_batch_back_and_stores_nothing_until_repaired() -> None:
    log = await log_with_execution()
    bus = FakeBus()
    reader = await bus.event_consumer("orchestrator")
    first, second = await delivered(bus, reader, "a", "b")
    ran_after: list[str] = []

    async def after() -> None:
        ran_after.append("after")

    log.refuse = RuntimeError("the event log refuses writes (test)")
    pipeline = CommitPipeline(log)
    await pipeline.submit(Handled([event("a")], deliveries=[first], after=[after]))
    await pipeline.submit(Handled([event("b")], deliveries=[second]))
    await pipeline.flush()
    assert pipeline.broken
    assert await log.events(X) == [] and ran_after == []
    assert reader.durable.settled == [("nak", "a", 1), ("nak", "b", 1)]
    # given back with a delay: not delivered again at once
    assert await reader.fetch(batch=2, timeout=0) == []

    # while broken, a batch decided on top of the lost ones is given back without an append
    log.refuse = None
    appends = len(log.appends)
    [third] = await delivered(bus, reader, "c")
    await pipeline.submit(Handled([event("c")], deliveries=[third]))
    await pipeline.flush()
    assert len(log.appends) == appends and await log.events(X) == []
    assert reader.durable.settled[-1] == ("nak", "c", 1)

    # the orchestrator rebuilt its state from the log: the messages come again, and are stored this time
    pipeline.repair()
    again = await reader.fetch(batch=3, timeout=NAK_DELAY_S + 5)
    while len(again) < 3:
        again += await reader.fetch(batch=3 - len(again), timeout=NAK_DELAY_S + 5)
    assert sorted((d.msg_id, d.num_delivered) for d in again) == [("a", 2), ("b", 2), ("c", 2)]
    await pipeline.submit(Handled([event(d.msg_id) for d in again], deliveries=again))
    await pipeline.flush()
    assert sorted(e.idempotency_key for e in await log.events(X)) == ["a", "b", "c"]
    assert reader.durable.pending() == 0
    await pipeline.close()


async def test_after_commit_work_that_fails_does_not_keep_the_batch_or_the_next_from_settling() -> None:
    log = await log_with_execution()
    bus = FakeBus()
    reader = await bus.event_consumer("orchestrator")
    first, second, poison = await delivered(bus, reader, "a", "b", "junk")

    async def broken() -> None:
        raise RuntimeError("after-commit work failed (test)")

    pipeline = CommitPipeline(log)
    await pipeline.submit(Handled([event("a")], deliveries=[first], poison=[poison], after=[broken]))
    await pipeline.submit(Handled([event("b")], deliveries=[second]))
    await pipeline.flush()
    assert [e.idempotency_key for e in await log.events(X)] == ["a", "b"]
    assert sorted(reader.durable.settled) == [("ack", "a", 1), ("ack", "b", 1), ("term", "junk", 1)]
    assert not pipeline.broken and reader.durable.pending() == 0
    await pipeline.close()


async def test_an_append_to_an_execution_that_was_never_created_stores_nothing_of_the_group() -> None:
    log = await log_with_execution()
    pipeline = CommitPipeline(log)
    stray = event("stray").model_copy(update={"execution_id": "unknown"})
    await pipeline.submit(Handled([event("a"), stray]))
    await pipeline.flush()
    assert pipeline.broken and await log.events(X) == []
    await pipeline.close()
