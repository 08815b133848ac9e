"""A NATS JetStream cluster of three real nats-servers: the bus's streams get 3 replicas, a Stack rides
through the SIGKILL of the server its bus is on, and the killed server, restarted, rejoins."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from control_plane.stack import Stack, StackConfig
from engine.bus.jetstream import Bus, BusError, stream_names
from engine.bus.nats_ops import NatsEndpoint, NatsOps
from engine.runtime.embedded import EmbeddedNats
from engine.runtime.embedded_cluster import ClusterNode, EmbeddedNatsCluster
from engine.runtime.processes import pid_alive
from tests.harness.nats import streams_seen
from tests.harness.polling import poll

log = logging.getLogger(__name__)

pytestmark = pytest.mark.anyio

ITEMS = 2000  # long enough to be under way at the kill (500 noop items could all be done by then)


def node_of(cluster: EmbeddedNatsCluster, bus: Bus) -> ClusterNode:
    """The cluster node `bus` is connected to."""
    return next(node for node in cluster.nodes if bus.server.startswith(f"127.0.0.1:{node.port}"))


async def replicas_on(monitor_urls: list[str], prefix: str) -> list[int]:
    """The replicas of the prefix's (command, event) streams as the servers at `monitor_urls` report
    the streams they hold, once one of them holds each (a server learns of a stream the meta leader
    placed on it a moment later)."""
    names = stream_names(prefix)

    def both() -> dict[str, dict[str, Any]] | None:
        found = {name: stream for url in monitor_urls for name, stream in streams_seen(url).items()}
        return found if all(name in found for name in names) else None
    seen = await poll(both, timeout_s=10, what=f"{monitor_urls} to hold the streams {names}")
    return [seen[name]["config"]["num_replicas"] for name in names]


async def publish(bus: Bus, msg_id: str) -> None:
    """Publish an event, again while NATS says "not now" (a stream electing a new leader): as the
    orchestrator does, with the same message id."""
    async def published() -> bool:
        try:
            await bus.publish_event("ex-1", msg_id, b"{}")
        except BusError as exc:
            assert exc.transient, exc  # refused for good would be a bug: only "not yet"
            return False
        return True
    await poll(published, timeout_s=20, what=f"the publish of {msg_id} to be stored")


async def test_the_bus_on_a_three_server_cluster_creates_its_streams_with_three_replicas(
        nats_cluster: EmbeddedNatsCluster, nats_prefix: str) -> None:
    async with await Bus.connect(nats_cluster.url, prefix=nats_prefix) as bus:
        await bus.ensure_streams()
        assert bus.replicas == 3
    for node in nats_cluster.nodes:  # each server holds a copy of both
        assert await replicas_on([node.monitor_url], nats_prefix) == [3, 3]
    # (which servers a monitor lists as the stream's leader and followers is left out: a server's view of
    # the other peers lags behind, listing two, three or the leader twice)


async def test_the_bus_on_a_single_server_creates_its_streams_with_one_replica(
        nats_server: EmbeddedNats, nats_prefix: str) -> None:
    async with await Bus.connect(nats_server.url, prefix=nats_prefix) as bus:
        await bus.ensure_streams()
        assert bus.replicas == 1
    assert await replicas_on([nats_server.monitor_url], nats_prefix) == [1, 1]


async def test_an_explicit_replica_count_wins_and_an_existing_stream_is_scaled_to_the_cluster_default(
        nats_cluster: EmbeddedNatsCluster, nats_prefix: str) -> None:
    async with await Bus.connect(nats_cluster.url, prefix=nats_prefix) as bus:
        await bus.ensure_streams(replicas=1)
        monitor = [node.monitor_url for node in nats_cluster.nodes]
        assert bus.replicas == 1 and await replicas_on(monitor, nats_prefix) == [1, 1]
        await bus.ensure_streams()  # the cluster's default: the existing R1 streams are updated to R3
        assert bus.replicas == 3 and await replicas_on(monitor, nats_prefix) == [3, 3]


async def test_asking_for_three_replicas_on_a_single_server_fails_saying_how_to_fix_it(
        nats_server: EmbeddedNats, nats_prefix: str) -> None:
    async with await Bus.connect(nats_server.url, prefix=nats_prefix) as bus:
        with pytest.raises(BusError) as raised:
            await bus.ensure_streams(replicas=3)
    assert "3 replicas" in str(raised.value) and "NOETL_NATS_REPLICAS=1" in str(raised.value)


async def test_a_bus_given_the_server_list_fails_over_when_its_server_dies_and_streams_keep_3_replicas(
        nats_cluster: EmbeddedNatsCluster, nats_prefix: str) -> None:
    async with await Bus.connect(nats_cluster.url, prefix=nats_prefix, publish_timeout_s=1.0) as bus:
        await bus.ensure_streams()
        before = bus.server
        killed = node_of(nats_cluster, bus)
        nats_cluster.kill(killed.index)
        try:
            await publish(bus, "after-the-kill")
            async with await Bus.connect(nats_cluster.url, prefix=nats_prefix) as late:
                await late.ensure_streams()  # a process starting now sees two servers: it keeps R3
                assert late.replicas == 3
            assert bus.failovers and bus.failovers[-1].moved and bus.failovers[-1].lost == before
            assert not bus.server.startswith(f"127.0.0.1:{killed.port}")
        finally:
            await asyncio.to_thread(nats_cluster.restart, killed.index)


async def test_a_killed_server_restarted_rejoins_the_cluster_and_catches_up_on_what_it_missed(
        nats_cluster: EmbeddedNatsCluster, nats_prefix: str) -> None:
    async with await Bus.connect(nats_cluster.url, prefix=nats_prefix, publish_timeout_s=1.0) as bus:
        await bus.ensure_streams()
        victim = next(node for node in nats_cluster.nodes if node is not node_of(nats_cluster, bus))
        nats_cluster.kill(victim.index)
        try:
            for i in range(20):  # stored by the two others while it is down
                await publish(bus, f"missed-{i}")
        finally:
            await asyncio.to_thread(nats_cluster.restart, victim.index)
        # healthy again: /healthz may turn "not ok" for a moment after the rejoin, while the restarted
        # server learns of the streams' new messages and catches up, so this is waited for too
        await asyncio.to_thread(nats_cluster.wait_healthy, 20)
        events = stream_names(nats_prefix)[1]

        def caught_up() -> bool:
            seen = streams_seen(victim.monitor_url).get(events)
            return seen is not None and seen["state"]["messages"] == 20
        await poll(caught_up, timeout_s=20, what=f"{victim.name} to hold the 20 events it missed")


def loop_playbook(name: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}, path: tests/{name}}}
        workflow:
          - step: fan_out
            loop: {{in: "{{{{ range({ITEMS}) | list }}}}", iterator: item, spec: {{mode: parallel}}}}
            tool: {{kind: noop, result: "{{{{ item * 2 }}}}"}}
        """)


async def test_a_parallel_loop_finishes_with_every_result_once_and_in_order_when_a_nats_server_is_killed(
        nats_cluster: EmbeddedNatsCluster, pg_dsn: str, nats_prefix: str, tmp_path: Path) -> None:
    config = StackConfig(home=tmp_path / "home", nats_url=nats_cluster.url, pg_dsn=pg_dsn, prefix=nats_prefix,
                         ack_wait_s=2.0, workers={"default": 8})
    async with Stack(config) as stack:
        assert stack.executions is not None and stack.store is not None and stack.bus is not None
        assert stack.bus.replicas == 3
        registered = await stack.executions.register(loop_playbook(f"cluster_{uuid.uuid4().hex[:8]}"))
        execution_id = await stack.executions.start(registered.path)
        store = stack.store.events

        async def items_done() -> int:
            return sum(1 for e in await store.events(execution_id) if e.type == "loop.item.succeeded")
        await poll(lambda: items_done_at_least(items_done, 20), timeout_s=60, what="the loop to be under way")
        victim = node_of(nats_cluster, stack.bus)
        leaders = {}  # which stream or consumer the killed server led: they elect another leader
        for name, stream in streams_seen(victim.monitor_url).items():
            if name in stream_names(nats_prefix):
                leaders[name] = stream["cluster"]["leader"]
                leaders |= {f"{name}/{c['name']}": (c.get("cluster") or {}).get("leader")
                            for c in stream.get("consumer_detail") or ()}
        nats_cluster.kill(victim.index)
        killed_at = time.monotonic()
        try:
            at_kill = await items_done()
            assert at_kill < ITEMS, "the loop finished before the kill: make it longer"
            timeline: list[tuple[float, int]] = [(0.0, at_kill)]

            async def progressed() -> bool:  # the time of each count seen, to find the longest stall
                done = await items_done()
                if done != timeline[-1][1]:
                    timeline.append((time.monotonic() - killed_at, done))
                return done >= ITEMS
            await poll(progressed, timeout_s=60, what="every item to be stored after the kill")
            summary = await stack.executions.wait(execution_id, timeout_s=30)
            assert summary["status"] == "completed"
            assert summary["steps"]["fan_out"]["result"] == [2 * i for i in range(ITEMS)]  # in order
            events = await store.events(execution_id)
            indexes = [-1 if e.loop_index is None else e.loop_index for e in events
                       if e.type == "loop.item.succeeded"]
            assert sorted(indexes) == list(range(ITEMS))  # each item's outcome stored exactly once
            lost = f"127.0.0.1:{victim.port}"
            assert any(f.moved and f.lost.startswith(lost) for f in stack.nats_failovers)
            recovery = timeline[1][0] if len(timeline) > 1 else float("nan")
            stall = max(b[0] - a[0] for a, b in zip(timeline, timeline[1:], strict=False))
            log.warning("nats failover: %d of %d items stored at the kill; the next stored %.2f s after it, "
                        "the longest stall %.2f s, all %d after %.2f s", at_kill, ITEMS, recovery, stall,
                        ITEMS, timeline[-1][0])
            led = sorted(name.split("_", 1)[1] for name, leader in leaders.items() if leader == victim.name)
            print(f"RECOVERY at_kill={at_kill} first={recovery:.2f}s stall={stall:.2f}s "
                  f"end={timeline[-1][0]:.2f}s killed_led={led}")
        finally:
            await asyncio.to_thread(nats_cluster.restart, victim.index)
    await asyncio.to_thread(nats_cluster.wait_healthy, 20)  # all three in the cluster again


async def items_done_at_least(count: Any, at_least: int) -> bool:
    return bool(await count() >= at_least)


async def test_the_nats_tool_on_the_cluster_reads_back_what_it_stored_in_buckets_of_three_replicas(
        nats_cluster: EmbeddedNatsCluster, nats_prefix: str) -> None:
    ops = NatsOps()
    endpoint = NatsEndpoint(nats_cluster.url)  # the deployment's NOETL_NATS_URL, as the tool gets it
    try:
        revision = await ops.kv_put(endpoint, f"{nats_prefix}_kv", "key", b"value")
        got = await ops.kv_get(endpoint, f"{nats_prefix}_kv", "key")
        assert got.data == b"value" and got.revision == revision
        await ops.object_put(endpoint, f"{nats_prefix}_obj", "name", b"bytes")
        assert (await ops.object_get(endpoint, f"{nats_prefix}_obj", "name")).data == b"bytes"
    finally:
        await ops.close()
    wanted = (f"KV_{nats_prefix}_kv", f"OBJ_{nats_prefix}_obj")  # the buckets' streams

    def buckets() -> dict[str, dict[str, Any]] | None:
        found = {name: stream for node in nats_cluster.nodes
                 for name, stream in streams_seen(node.monitor_url).items() if name in wanted}
        return found if len(found) == len(wanted) else None
    seen = await poll(buckets, timeout_s=10, what=f"the cluster to hold the buckets' streams {wanted}")
    assert [seen[name]["config"]["num_replicas"] for name in wanted] == [3, 3]


def test_a_local_cluster_forms_with_one_meta_leader_and_stop_leaves_none_of_its_servers_running(
        tmp_path: Path) -> None:
    cluster = EmbeddedNatsCluster(tmp_path, size=3, name="stopping").start()
    try:
        leaders = {(node.meta() or {}).get("leader") for node in cluster.nodes}
        assert len(leaders) == 1 and leaders <= {node.name for node in cluster.nodes}
        pids = [node.server.pid for node in cluster.nodes if node.server is not None]
        assert len(pids) == 3 and len({node.state_dir for node in cluster.nodes}) == 3
    finally:
        cluster.stop()
    assert not any(pid_alive(pid) for pid in pids)
    assert not any(node.is_running() for node in cluster.nodes)
