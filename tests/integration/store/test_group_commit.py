"""The commit pipeline's group commit against the real event log: batches handed in apart share one
transaction, and a batch that ends an execution, or a flush, does not wait for company."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from control_plane.store.db import Database
from control_plane.store.events import EventStore
from engine.protocol.events import Event
from engine.runtime.commits import CommitPipeline, Handled
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio


def event(execution_id: str, type_: str = "step.started") -> Event:
    key = uuid.uuid4().hex
    return Event(event_id=key, idempotency_key=key, execution_id=execution_id, type=type_)  # type: ignore[arg-type]


async def new_execution(store: EventStore) -> str:
    execution_id = f"ex-{uuid.uuid4().hex[:12]}"
    await store.create_execution(execution_id, playbook_path="demo/group", playbook_version=1,
                                 playbook_text="kind: Playbook\n", payload={})
    return execution_id


async def transactions(db: Database, execution_id: str) -> list[int]:
    """The inserting transaction of each stored event, in log order."""
    rows = await db.fetch_all("SELECT xmin::text::bigint AS tx FROM events WHERE execution_id = %s "
                              "ORDER BY seq", (execution_id,))
    return [int(row["tx"]) for row in rows]


async def test_batches_handed_in_apart_share_a_transaction_and_an_ending_batch_does_not_wait(
        db: Database) -> None:
    store = EventStore(db)
    ex = await new_execution(store)
    pipeline = CommitPipeline(store, group_window_s=60.0)  # longer than the test: only company ends it
    settled: list[str] = []

    async def note(name: str) -> None:
        settled.append(name)

    try:
        await pipeline.submit(Handled([event(ex)], after=[lambda: note("first")]))
        for _ in range(20):  # the pipeline takes the batch and waits for company
            await asyncio.sleep(0)
        assert await transactions(db, ex) == [] and settled == []
        await pipeline.submit(Handled([event(ex)], after=[lambda: note("second")]))
        await pipeline.submit(Handled([event(ex, "execution.completed")], after=[lambda: note("last")],
                                      urgent=True))
        await poll(lambda: settled == ["first", "second", "last"], timeout_s=10,
                   what="the three batches to be committed")
        assert len(set(await transactions(db, ex))) == 1  # one transaction for all three
    finally:
        await pipeline.close()


async def test_a_flush_commits_a_lone_batch_without_waiting_for_company(db: Database) -> None:
    store = EventStore(db)
    ex = await new_execution(store)
    pipeline = CommitPipeline(store, group_window_s=60.0)
    try:
        await pipeline.submit(Handled([event(ex)]))
        await asyncio.wait_for(pipeline.flush(), timeout=10)
        assert len(await transactions(db, ex)) == 1
    finally:
        await pipeline.close()
