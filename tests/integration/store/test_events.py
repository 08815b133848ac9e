"""The event log: idempotent appends, gapless per-execution order under concurrency, exact round trips."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.db import Database
from control_plane.store.events import NOTIFY_CHANNEL, EventStore
from engine.protocol.events import Event
from engine.protocol.results import ResultEnvelope, ResultRef
from engine.runtime.ports import EventLog

pytestmark = pytest.mark.anyio

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def event(execution_id: str, key: str, type: str = "step.succeeded", **fields: Any) -> Event:
    return Event(event_id=f"id-{key}", idempotency_key=key, execution_id=execution_id, type=type,  # type: ignore[arg-type]
                 timestamp=fields.pop("timestamp", T0), **fields)


async def new_execution(store: EventStore, execution_id: str = "ex-1", **fields: Any) -> str:
    await store.create_execution(execution_id, playbook_path=fields.pop("path", "demo/hello"),
                                 playbook_version=1, playbook_text="kind: Playbook\n",
                                 payload={"n": 1}, **fields)
    return execution_id


@pytest.fixture
def store(db: Database) -> EventStore:
    log: EventLog = EventStore(db)  # the engine's port is satisfied
    assert isinstance(log, EventStore)
    return log


async def test_events_read_back_equal_the_written_ones(store: EventStore) -> None:
    ex = await new_execution(store)
    written = [
        event(ex, "k1", "execution.started", payload={"workload": {"a": [1, 2.5, None, "é"]}}),
        event(ex, "k2", "step.scheduled", derived=True, step="fetch", command_id="c1", run=1, pool="cpu",
              timestamp=T0 + timedelta(microseconds=1)),
        event(ex, "k3", "loop.item.succeeded", step="fetch", loop_index=7, attempt=2, worker="w-1",
              duration_ms=12.25, result=ResultEnvelope(
                  status="ok", data={"rows": [[1, "x"]]},
                  ref=ResultRef(uri="file:///tmp/r.arrow", size=10, format="arrow", row_count=1,
                                schema={"a": "int64"}, preview=[{"a": 1}]))),
        event(ex, "k4", "step.failed", step="load",
              result=ResultEnvelope.fail("timeout", "took too long", attempt=3, worker="w-2")),
    ]
    stored = await store.append(written)
    assert [e.seq for e in stored] == [1, 2, 3, 4]
    assert stored == [e.model_copy(update={"seq": i}) for i, e in enumerate(written, 1)]
    read = await store.events(ex)
    assert read == stored
    assert read[2].result is not None and read[2].result.ref is not None
    assert read[2].result.ref.schema_ == {"a": "int64"}
    assert await store.events(ex, after_seq=1, limit=2) == stored[1:3]
    assert await store.events(ex, after_seq=4) == []
    assert await store.latest_seq(ex) == 4


async def test_append_is_idempotent_on_the_idempotency_key(store: EventStore) -> None:
    ex = await new_execution(store)
    batch = [event(ex, "a"), event(ex, "b")]
    assert [e.seq for e in await store.append(batch)] == [1, 2]
    assert await store.append(batch) == []
    # a retry whose event differs but has the same key is still a duplicate; new keys continue the order
    again = await store.append([event(ex, "b", payload={"retry": True}), event(ex, "c")])
    assert [(e.idempotency_key, e.seq) for e in again] == [("c", 3)]
    assert [e.idempotency_key for e in await store.events(ex)] == ["a", "b", "c"]
    assert await store.append([]) == []


async def test_a_duplicate_within_one_batch_is_stored_once(store: EventStore) -> None:
    ex = await new_execution(store)
    stored = await store.append([event(ex, "a"), event(ex, "b"), event(ex, "a", step="other")])
    assert [(e.idempotency_key, e.seq, e.step) for e in stored] == [("a", 1, None), ("b", 2, None)]
    assert await store.latest_seq(ex) == 2


async def test_concurrent_appends_keep_a_gapless_per_execution_order(store: EventStore) -> None:
    executions = [await new_execution(store, f"ex-{i}") for i in range(3)]
    batches = []
    for n in range(40):
        ex = executions[n % 3]
        batch = [event(ex, f"{ex}-{n}-{j}", payload={"batch": n, "j": j}) for j in range(3)]
        batches.append(batch)
        if n % 4 == 0:
            batches.append(batch)  # the same batch delivered twice, concurrently
    mixed = [event(executions[0], "mixed-0"), event(executions[2], "mixed-2"),
             event(executions[1], "mixed-1")]
    batches.append(mixed)
    results = await asyncio.gather(*(store.append(b) for b in batches))

    stored_keys = [e.idempotency_key for r in results for e in r]
    assert len(stored_keys) == len(set(stored_keys)) == 40 * 3 + 3
    for ex in executions:
        log = await store.events(ex)
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        assert await store.latest_seq(ex) == len(log)
        # each batch landed contiguously and in its own order (one transaction under the row lock)
        by_batch: dict[int, list[int]] = {}
        for e in log:
            if "batch" in e.payload:
                by_batch.setdefault(e.payload["batch"], []).append(e.seq or 0)
                assert e.payload["j"] == len(by_batch[e.payload["batch"]]) - 1
        for seqs in by_batch.values():
            assert seqs == list(range(seqs[0], seqs[0] + 3))
    for result in results:
        assert all(e.seq is not None for e in result)


async def test_appending_to_an_unknown_execution_stores_nothing(store: EventStore) -> None:
    ex = await new_execution(store)
    with pytest.raises(NotFoundError, match="ghost") as info:
        await store.append([event(ex, "a"), event("ghost", "b")])
    assert "create_execution" in str(info.value)
    assert await store.events(ex) == []
    with pytest.raises(NotFoundError):
        await store.latest_seq("ghost")


async def test_active_executions_are_those_without_a_terminal_event(store: EventStore, db: Database) -> None:
    for name in ("a", "b", "c"):
        await new_execution(store, name)
    await store.append([event("a", "a1", "execution.started"), event("a", "a2", "execution.completed"),
                        event("b", "b1", "execution.started")])
    await store.append([event("c", "c1", "execution.cancelled")])
    assert await store.active_executions() == ["b"]
    await store.append([event("a", "a3", "policy.applied")])  # a late event does not reopen it
    assert await store.active_executions() == ["b"]
    await store.set_status("b", "running")
    row = await db.fetch_one("SELECT status FROM executions WHERE execution_id = 'b'")
    assert row is not None and row["status"] == "running"
    with pytest.raises(NotFoundError):
        await store.set_status("ghost", "running")


async def test_create_execution_is_idempotent_but_refuses_a_different_run(store: EventStore) -> None:
    await new_execution(store, "p")
    await new_execution(store, "p")  # a retried create
    with pytest.raises(ConflictError, match="already exists"):
        await new_execution(store, "p", path="other/playbook")
    await new_execution(store, "child", parent_execution_id="p", parent_step="call")
    record = await store.executions.get("child")
    assert (record.parent_execution_id, record.parent_step, record.playbook_version) == ("p", "call", 1)
    with pytest.raises(NotFoundError, match="parent execution 'nope'"):
        await new_execution(store, "orphan", parent_execution_id="nope")


async def test_each_append_notifies_listeners(store: EventStore, pg_dsn: str) -> None:
    ex = await new_execution(store)
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as listener:
        await listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        await store.append([event(ex, "a"), event(ex, "b")])
        notes = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    assert [json.loads(n.payload) for n in notes] == [{"execution_id": ex, "seq": 2}]


async def test_nul_characters_do_not_break_the_append(store: EventStore) -> None:
    ex = await new_execution(store)
    tricky = {"nul": "a\x00b", "escaped": "\\u0000 stays", "both": "\\\x00"}
    [stored] = await store.append([event(ex, "a", payload=tricky)])
    [read] = await store.events(ex)
    assert read.payload == {"nul": "a\ufffdb", "escaped": "\\u0000 stays", "both": "\\\ufffd"}
    assert stored.seq == read.seq == 1


async def test_a_key_raced_by_two_executions_is_stored_once_without_gaps(store: EventStore) -> None:
    a, b = await new_execution(store, "a"), await new_execution(store, "b")
    batches = []
    for n in range(30):
        shared = event(a if n % 2 else b, f"shared-{n // 2}")  # the same key offered to both executions
        own = event(a if n % 2 else b, f"own-{n}")
        batches.append([own, shared] if n % 3 else [shared, own])
    results = await asyncio.gather(*(store.append(x) for x in batches))
    keys = [e.idempotency_key for r in results for e in r]
    assert len(keys) == len(set(keys)) == 30 + 15
    for ex in (a, b):
        assert [e.seq for e in await store.events(ex)] == list(range(1, await store.latest_seq(ex) + 1))
