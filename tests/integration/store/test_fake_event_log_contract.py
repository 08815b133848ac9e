"""The in-memory event log (tests/harness/fake_event_log.py) keeps the promises of the Postgres one that
the runtime relies on: each scenario here runs against control_plane.store.events.EventStore and the
fake, and must come out the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.db import Database
from control_plane.store.events import EventStore
from control_plane.store.migrate import migrate
from engine.protocol.events import Event
from tests.harness.fake_event_log import FakeEventLog

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["postgres", "fake"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "fake":
        yield FakeEventLog()
        return
    db = await Database.open(request.getfixturevalue("pg_dsn"), min_size=1, max_size=4)  # a fresh database
    try:
        await migrate(db)
        yield EventStore(db)
    finally:
        await db.close()


def event(execution_id: str, key: str, type_: str = "step.succeeded") -> Event:
    return Event(event_id=f"id-{key}", idempotency_key=key, execution_id=execution_id, type=type_)  # type: ignore[arg-type]


async def create(log: Any, execution_id: str, path: str = "demo/a", parent: str | None = None) -> bool:
    return bool(await log.create_execution(execution_id, playbook_path=path, playbook_version=1,
                                           playbook_text="kind: Playbook\n", payload={},
                                           parent_execution_id=parent))


async def status(log: Any, execution_id: str) -> tuple[str, bool]:
    if isinstance(log, FakeEventLog):
        row = log.executions[execution_id]
        return row.status, row.ended
    execution = await log.executions.get(execution_id)
    return execution.status, execution.ended_at is not None


async def test_events_are_numbered_per_execution_in_batch_order_and_repeated_keys_are_stored_once(
        log: Any) -> None:
    await create(log, "ex-1")
    await create(log, "ex-2")
    stored = await log.append([event("ex-1", "a"), event("ex-2", "b"), event("ex-1", "c"),
                               event("ex-1", "a")])
    assert [(e.idempotency_key, e.seq) for e in stored] == [("a", 1), ("b", 1), ("c", 2)]
    assert await log.record([event("ex-1", "c"), event("ex-1", "d")]) == 1
    assert [(e.idempotency_key, e.seq) for e in await log.events("ex-1")] == [("a", 1), ("c", 2), ("d", 3)]
    assert [e.idempotency_key for e in await log.events("ex-1", after_seq=1, limit=1)] == ["c"]


async def test_an_append_with_an_event_of_an_unknown_execution_stores_none_of_the_batch(log: Any) -> None:
    await create(log, "ex-1")
    with pytest.raises(NotFoundError):
        await log.append([event("ex-1", "a"), event("nobody", "b")])
    assert await log.events("ex-1") == []


async def test_the_status_follows_the_start_and_the_first_terminal_event_and_ended_ones_are_not_active(
        log: Any) -> None:
    await create(log, "ex-1")
    await create(log, "ex-2")
    assert await status(log, "ex-1") == ("pending", False)
    await log.append([event("ex-1", "s1", "execution.started"), event("ex-2", "s2", "execution.started")])
    assert await status(log, "ex-1") == ("running", False)
    await log.append([event("ex-1", "f1", "execution.failed"), event("ex-1", "c1", "execution.completed")])
    assert await status(log, "ex-1") == ("failed", True)
    assert await log.active_executions() == ["ex-2"]


async def test_creating_an_execution_again_is_a_no_op_for_the_same_playbook_and_a_conflict_otherwise(
        log: Any) -> None:
    assert await create(log, "ex-1") is True
    assert await create(log, "ex-1") is False
    with pytest.raises(ConflictError):
        await create(log, "ex-1", path="demo/other")
    with pytest.raises(NotFoundError):
        await create(log, "ex-2", parent="nobody")
