"""Orchestration spread over processes: partitions by lease, handed over when an owner dies, fenced when
one stalls (docs/runtime.md "Partitions")."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from control_plane.services.orchestrators import OrchestratorsService
from control_plane.stack import Stack
from control_plane.store.partitions import PartitionLeaseStore
from engine.protocol.events import Event
from engine.protocol.partitions import PARTITIONS, partition_of
from engine.runtime.partitions import Fence, PartitionFencedError
from tests.harness.polling import poll
from tests.integration.runtime.test_faults import WAITING_STEP, count, playbook, start

pytestmark = pytest.mark.anyio

SERVER = ("--port", "0", "--no-indexer", "--no-agent")  # two on one host, without the model
CHAIN = ("workflow:\n  - step: first\n    tool: {kind: noop, result: 1}\n    next: second\n"
         "  - step: second\n    tool: {kind: noop, result: 2}\n")
WAITING = ("workflow:\n  - step: first\n    tool: {kind: noop, result: 1}\n    next: wait\n"
           "  - step: wait\n" + WAITING_STEP + "    next: last\n"
           "  - step: last\n    tool: {kind: noop, result: 3}\n")


async def owners(dsn: str) -> dict[int, dict[str, Any]]:
    """Each partition's current lease (owner, epoch, whether it is current), as the store has it."""
    reader = PartitionLeaseStore(dsn)
    try:
        return await reader.owners()
    finally:
        await reader.leave()


async def members(dsn: str) -> dict[str, int]:
    """The owner of each current lease -> the pid of its process (from the store's member rows)."""
    reader = PartitionLeaseStore(dsn)
    try:
        conn = await reader._connection()
        cur = await conn.execute("SELECT member_id, pid FROM orchestrators")
        return {row["member_id"]: row["pid"] for row in await cur.fetchall()}
    finally:
        await reader.leave()


async def split_between(dsn: str, count_: int) -> dict[str, set[int]]:
    """Wait until `count_` members own every partition between them, each some; member -> partitions."""
    found: dict[str, set[int]] = {}

    async def split() -> bool:
        found.clear()
        for partition, lease in (await owners(dsn)).items():
            if lease["owner"] and lease["current"]:
                found.setdefault(lease["owner"], set()).add(partition)
        return len(found) == count_ and sum(map(len, found.values())) == PARTITIONS

    await poll(split, timeout_s=60, what=f"{count_} orchestrators to share the {PARTITIONS} partitions")
    return found


async def test_two_servers_share_the_partitions_and_run_executions_of_every_partition_once_each(
        client: Stack, spawn: Any, runtime_env: dict[str, str]) -> None:
    spawn("server", "start", *SERVER)
    spawn("server", "start", *SERVER)
    spawn("worker", "start", "--concurrency", "4")
    shares = await split_between(runtime_env["NOETL_PG_DSN"], 2)
    assert all(shares.values()) and not set.intersection(*shares.values())
    assert client.store is not None
    view = await OrchestratorsService(client.store).view()  # what GET /api/orchestrators answers
    live = {m["member_id"]: set(m["partitions"]) for m in view["members"] if m["live"]}
    assert live == shares and view["unowned"] == [] and view["partitions"] == PARTITIONS
    text = playbook(f"shared_{uuid.uuid4().hex[:8]}", CHAIN)
    started = [await start(client, text, {}) for _ in range(12)]
    owner_of = {p: member for member, parts in shares.items() for p in parts}
    assert len({owner_of[partition_of(e)] for e in started}) == 2, "both servers run some of them"
    assert client.executions is not None and client.store is not None
    for execution_id in started:
        assert (await client.executions.wait(execution_id, timeout_s=60))["status"] == "completed"
        events = await client.store.events.events(execution_id)
        assert [count(events, "step.succeeded", s) for s in ("first", "second")] == [1, 1]


@dataclass
class Waiting:
    """An execution waiting in its middle step, on two servers; its partition and that one's lease."""

    execution_id: str
    marker: Path
    release: Path
    partition: int
    lease: dict[str, Any]
    owner: subprocess.Popen[bytes]  # the server process holding that lease


async def waiting_on_two_servers(client: Stack, spawn: Any, dsn: str, tmp_path: Path, name: str) -> Waiting:
    servers = [spawn("server", "start", *SERVER), spawn("server", "start", *SERVER)]
    spawn("worker", "start", "--concurrency", "2")
    await split_between(dsn, 2)
    marker, release = tmp_path / "marker", tmp_path / "release"
    execution_id = await start(client, playbook(f"{name}_{uuid.uuid4().hex[:8]}", WAITING),
                               {"marker": str(marker), "release": str(release)})
    await poll(marker.exists, timeout_s=60, what="the waiting step to start")
    partition = partition_of(execution_id)
    lease = (await owners(dsn))[partition]
    pid = (await members(dsn))[lease["owner"]]
    [owner] = [s for s in servers if s.pid == pid]
    return Waiting(execution_id, marker, release, partition, lease, owner)


async def test_the_partition_of_a_killed_server_goes_to_the_other_and_its_execution_finishes_once(
        client: Stack, spawn: Any, runtime_env: dict[str, str], tmp_path: Path) -> None:
    dsn = runtime_env["NOETL_PG_DSN"]
    waiting = await waiting_on_two_servers(client, spawn, dsn, tmp_path, "handover")
    execution_id, partition, owner = waiting.execution_id, waiting.partition, waiting.lease["owner"]
    os.killpg(waiting.owner.pid, signal.SIGKILL)
    waiting.owner.wait(timeout=10)
    waiting.release.touch()  # the step ends after its orchestrator died: the other server stores it

    async def taken_over() -> bool:
        lease = (await owners(dsn))[partition]
        return bool(lease["current"]) and lease["owner"] != owner

    await poll(taken_over, timeout_s=30, what="the other server to take the partition over")
    assert client.executions is not None and client.store is not None
    assert (await client.executions.wait(execution_id, timeout_s=60))["status"] == "completed"
    events = await client.store.events.events(execution_id)
    for step in ("first", "wait", "last"):
        assert count(events, "step.scheduled", step) == 1, step
        assert count(events, "step.succeeded", step) == 1, step
    assert waiting.marker.read_text() == "x"  # the step ran once


async def test_a_server_that_stalled_past_its_lease_cannot_write_and_its_execution_finishes_once(
        client: Stack, spawn: Any, runtime_env: dict[str, str], tmp_path: Path) -> None:
    dsn = runtime_env["NOETL_PG_DSN"]
    waiting = await waiting_on_two_servers(client, spawn, dsn, tmp_path, "stall")
    execution_id, partition, before, stalled = (waiting.execution_id, waiting.partition, waiting.lease,
                                                waiting.owner)
    os.killpg(stalled.pid, signal.SIGSTOP)  # alive for Postgres and NATS, silent: its lease runs out
    try:
        waiting.release.touch()

        async def taken_over() -> bool:
            lease = (await owners(dsn))[partition]
            return bool(lease["current"]) and lease["owner"] != before["owner"]

        await poll(taken_over, timeout_s=30, what="the other server to take the stalled one's partition")
        assert client.executions is not None and client.store is not None
        assert (await client.executions.wait(execution_id, timeout_s=60))["status"] == "completed"
    finally:
        os.killpg(stalled.pid, signal.SIGCONT)
    after = (await owners(dsn))[partition]
    assert after["epoch"] > before["epoch"]
    # the former owner's fence is refused by the store: what it would still append is not stored
    stale = Event(event_id=uuid.uuid4().hex, idempotency_key=uuid.uuid4().hex, execution_id=execution_id,
                  type="step.started", step="last")
    with pytest.raises(PartitionFencedError):
        await client.store.events.record([stale], fence=Fence(before["owner"], {partition: before["epoch"]}))
    events = await client.store.events.events(execution_id)
    assert stale.idempotency_key not in {e.idempotency_key for e in events}
    for step in ("first", "wait", "last"):
        assert count(events, "step.succeeded", step) == 1, step
    assert waiting.marker.read_text() == "x"

    async def rejoined() -> bool:  # woken, it finds its lease gone, drops the partition and asks again
        return len(await split_between(dsn, 2)) == 2

    await poll(rejoined, timeout_s=60, what="the woken server to own a share again")
