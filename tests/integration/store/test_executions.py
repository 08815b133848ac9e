"""Executions: get one, filter by path/status/time/parent, keyset pagination newest first."""

from __future__ import annotations

from datetime import datetime

import pytest

from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.store.db import Database
from control_plane.store.executions import ExecutionStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(db: Database) -> ExecutionStore:
    store = ExecutionStore(db)
    for i in range(7):
        path = "etl/daily" if i % 2 == 0 else "etl/hourly"
        await store.create(f"ex-{i}", playbook_path=path, playbook_version=i + 1,
                           playbook_text=f"# {i}", payload={"i": i},
                           parent_execution_id="ex-0" if i == 5 else None,
                           parent_step="fan_out" if i == 5 else None)
    for i in (1, 2, 3):
        await store.set_status(f"ex-{i}", "completed")
    await store.set_status("ex-4", "failed")
    return store


def ids(items: list) -> list[str]:
    return [x.execution_id for x in items]


async def test_get_one(store: ExecutionStore) -> None:
    record = await store.get("ex-3")
    assert (record.playbook_path, record.playbook_version, record.status) == ("etl/hourly", 4, "completed")
    assert record.payload == {"i": 3} and record.last_seq == 0 and record.ended_at is None
    assert record.updated_at >= record.created_at
    assert await store.playbook_text("ex-3") == "# 3"
    with pytest.raises(NotFoundError, match="'nope' is not stored"):
        await store.get("nope")


async def test_filters(store: ExecutionStore) -> None:
    everything = (await store.list()).items
    assert ids(everything) == [f"ex-{i}" for i in reversed(range(7))]  # newest first
    assert ids((await store.list(path="etl/daily")).items) == ["ex-6", "ex-4", "ex-2", "ex-0"]
    assert ids((await store.list(status="completed")).items) == ["ex-3", "ex-2", "ex-1"]
    assert ids((await store.list(status=["failed", "pending"], path="etl/daily")).items) == [
        "ex-6", "ex-4", "ex-0"]
    assert ids((await store.list(parent_execution_id="ex-0")).items) == ["ex-5"]
    by_id = {x.execution_id: x for x in everything}
    window = await store.list(created_after=by_id["ex-2"].created_at, created_before=by_id["ex-5"].created_at)
    assert ids(window.items) == ["ex-4", "ex-3", "ex-2"]  # after inclusive, before exclusive
    assert (await store.list(path="none")).items == []


async def test_cursor_pagination_walks_every_row_once(store: ExecutionStore) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.list(limit=3, cursor=cursor)
        seen += ids(page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and seen == [f"ex-{i}" for i in reversed(range(7))]
    first = await store.list(limit=2, status="completed")
    rest = await store.list(limit=2, status="completed", cursor=first.next_cursor)
    assert ids(first.items) + ids(rest.items) == ["ex-3", "ex-2", "ex-1"] and rest.next_cursor is None
    exact = await store.list(limit=7)
    assert len(exact.items) == 7 and exact.next_cursor is None


async def test_bad_arguments_are_clear_errors(store: ExecutionStore) -> None:
    with pytest.raises(InvalidArgumentError, match="not a cursor"):
        await store.list(cursor="garbage!")
    with pytest.raises(InvalidArgumentError, match="limit 0"):
        await store.list(limit=0)
    with pytest.raises(InvalidArgumentError, match="time zone"):
        await store.list(created_after=datetime(2025, 1, 1))
    with pytest.raises(NotFoundError):
        await store.set_status("nope", "running")
