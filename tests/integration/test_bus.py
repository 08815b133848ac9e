"""The JetStream bus against a real nats-server: de-duplication, work queues, redelivery, acks, cancels."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from engine.bus.jetstream import Bus, BusError, Consumer, Delivery, stream_names
from engine.runtime.embedded import start_nats
from evals.benchmarks.dispatch_floor import measure_floor
from tests.harness.nats import fetch_all
from tests.harness.polling import poll

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=60))  # type: ignore[arg-type]


async def _bus(url: str, prefix: str) -> Bus:
    bus = await Bus.connect(url, prefix=prefix)
    await bus.ensure_streams()
    return bus


async def _next(consumer: Consumer, within_s: float) -> Delivery | None:
    """The next delivery, polling with short fetches until `within_s` has passed."""
    deadline = time.monotonic() + within_s
    while (left := deadline - time.monotonic()) > 0:
        got = await consumer.fetch(timeout=min(0.25, left))
        if got:
            return got[0]
    return None


def test_a_command_published_twice_with_the_same_id_is_delivered_once(nats_url: str,
                                                                      nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        try:
            first = await bus.publish_command("pool-a", "cmd-1", b"run")
            second = await bus.publish_command("pool-a", "cmd-1", b"run")
            assert not first.duplicate and second.duplicate and second.seq == first.seq
            consumer = await bus.command_consumer("pool-a")
            got = await consumer.fetch(batch=10, timeout=0.5)
            assert [d.data for d in got] == [b"run"] and got[0].msg_id == "cmd-1"
            await got[0].ack()
            assert await consumer.fetch(timeout=0.3) == []
        finally:
            await bus.close()
    run(scenario())


def test_each_command_goes_to_exactly_one_of_several_consumers(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        buses = [await _bus(nats_url, nats_prefix) for _ in range(3)]
        try:
            consumers = [await b.command_consumer("pool-a") for b in buses]
            # a held (unacked) command is not handed to another consumer
            await buses[0].publish_command("pool-a", "held-1", b"h1")
            await buses[0].publish_command("pool-a", "held-2", b"h2")
            [a] = await consumers[0].fetch(timeout=1)
            [b] = await consumers[1].fetch(timeout=1)
            assert {a.data, b.data} == {b"h1", b"h2"}
            assert await consumers[2].fetch(timeout=0.3) == []
            await a.ack()
            await b.ack()

            for i in range(30):
                await buses[0].publish_command("pool-a", f"c{i}", str(i).encode())
            seen: list[bytes] = []

            async def drain(consumer: Consumer) -> None:
                while len(seen) < 30:
                    for d in await consumer.fetch(batch=2, timeout=0.2):
                        seen.append(d.data)
                        await d.ack()

            await asyncio.wait_for(asyncio.gather(*(drain(c) for c in consumers)), timeout=20)
            assert sorted(seen) == sorted(str(i).encode() for i in range(30))
        finally:
            for b in buses:
                await b.close()
    run(scenario())


def test_a_busy_consumer_asks_for_no_more_than_it_fetches_so_another_takes_the_rest(
        nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        other = await _bus(nats_url, nats_prefix)
        try:
            busy = await bus.command_consumer("pool-c")
            idle = await other.command_consumer("pool-c")
            assert await busy.fetch(batch=1, timeout=0.05) == []  # its one-message request stands
            for n in range(3):
                await bus.publish_command("pool-c", f"cmd-{n}", f"{n}".encode())
            first = await _next(busy, 5)
            assert first is not None
            # `busy` holds one command and asked for no more: the others go to the second reader
            rest = [await _next(idle, 5), await _next(idle, 5)]
            assert sorted(d.data for d in rest if d is not None) == sorted({b"0", b"1", b"2"} - {first.data})
            for delivery in [first, *rest]:
                assert delivery is not None
                await delivery.ack()
        finally:
            await bus.close()
            await other.close()
    run(scenario())


def test_a_command_not_acked_within_ack_wait_is_delivered_again(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        try:
            consumer = await bus.command_consumer("pool-a", ack_wait_s=1.0)
            await bus.publish_command("pool-a", "cmd-1", b"work")
            first = await _next(consumer, 2)
            assert first is not None and first.num_delivered == 1
            started = time.monotonic()
            again = await _next(consumer, 5)  # not acked: back after about ack_wait
            assert again is not None and again.data == b"work" and again.num_delivered == 2
            assert time.monotonic() - started >= 0.8
            await again.ack()
            assert await _next(consumer, 1.5) is None
        finally:
            await bus.close()
    run(scenario())


def test_in_progress_keeps_a_slow_command_from_being_redelivered(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        try:
            consumer = await bus.command_consumer("pool-a", ack_wait_s=1.0)
            await bus.publish_command("pool-a", "cmd-1", b"slow")
            held = await _next(consumer, 2)
            assert held is not None
            started = time.monotonic()
            while time.monotonic() - started < 2.5:  # 2.5 ack_waits of "work", reporting progress
                await held.in_progress()
                assert await consumer.fetch(timeout=0.3) == []  # this fetch is also the work's clock
            await held.ack()
            assert await _next(consumer, 1.5) is None
        finally:
            await bus.close()
    run(scenario())


def test_nak_with_a_delay_redelivers_after_the_delay(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        try:
            consumer = await bus.command_consumer("pool-a", ack_wait_s=30)
            await bus.publish_command("pool-a", "cmd-1", b"retry me")
            first = await _next(consumer, 2)
            assert first is not None
            naked_at = time.monotonic()
            await first.nak(delay_s=1.0)
            again = await _next(consumer, 5)
            assert again is not None and again.num_delivered == 2
            assert time.monotonic() - naked_at >= 0.9
            await again.nak()  # no delay: straight back
            third = await _next(consumer, 1)
            assert third is not None and third.num_delivered == 3
            await third.ack()
        finally:
            await bus.close()
    run(scenario())


def test_term_and_max_deliver_stop_redelivery(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        try:
            consumer = await bus.command_consumer("pool-a", ack_wait_s=30, max_deliver=2)
            await bus.publish_command("pool-a", "poison", b"p")
            await bus.publish_command("pool-a", "flaky", b"f")
            poison = await _next(consumer, 2)
            assert poison is not None and poison.data == b"p"
            await poison.term()
            for attempt in (1, 2):
                flaky = await _next(consumer, 2)
                assert flaky is not None and flaky.data == b"f" and flaky.num_delivered == attempt
                await flaky.nak()
            assert await _next(consumer, 1) is None  # max_deliver reached
        finally:
            await bus.close()
    run(scenario())


def test_fetch_on_an_empty_queue_returns_an_empty_list_after_the_timeout(nats_url: str,
                                                                         nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        try:
            consumer = await bus.command_consumer("idle")
            started = time.monotonic()
            assert await consumer.fetch(batch=1, timeout=0.3) == []
            assert await consumer.fetch(batch=5, timeout=0.3) == []
            assert 0.5 <= time.monotonic() - started < 3
        finally:
            await bus.close()
    run(scenario())


def test_events_stay_in_the_stream_and_each_durable_reader_sees_all(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        try:
            for i in range(3):
                await bus.publish_event("exec-1", f"e{i}", f"event {i}".encode())
            assert (await bus.publish_event("exec-1", "e0", b"event 0")).duplicate
            for reader in ("orchestrator", "indexer"):
                consumer = await bus.event_consumer(reader)
                got = await fetch_all(consumer, 3)
                assert [d.data for d in got] == [b"event 0", b"event 1", b"event 2"]
                for d in got:
                    await d.ack()
                assert await consumer.fetch(timeout=0.3) == []
            with pytest.raises(BusError, match="consumer name"):
                await bus.event_consumer("bad.name")
        finally:
            await bus.close()
    run(scenario())


def test_prefixes_have_their_own_streams(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        mine, other = await _bus(nats_url, nats_prefix), await _bus(nats_url, nats_prefix + "x")
        try:
            assert mine.command_stream != other.command_stream
            assert stream_names("noetl") == ("NOETL_COMMANDS", "NOETL_EVENTS")
            await other.publish_command("pool-a", "c1", b"theirs")
            assert await (await mine.command_consumer("pool-a")).fetch(timeout=0.3) == []
            await mine.ensure_streams()  # idempotent
        finally:
            await mine.close()
            await other.close()
    run(scenario())


def test_a_cancel_broadcast_reaches_every_subscriber(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        buses = [await Bus.connect(nats_url, prefix=nats_prefix) for _ in range(3)]
        try:
            received: list[list[bytes]] = [[], []]
            done = asyncio.Event()

            def collector(box: list[bytes]) -> Callable[[bytes], Awaitable[None]]:
                async def on_cancel(data: bytes) -> None:
                    box.append(data)
                    if all(received):
                        done.set()
                return on_cancel

            subs = [await buses[i].subscribe_cancel(collector(received[i])) for i in range(2)]
            # once subscribe returns the server has the subscription: one broadcast reaches both (nats-py's
            # flush alone used to let the PING overtake the SUB, and a subscriber missed it; jetstream.py)
            await buses[2].publish_cancel(b'{"command_id": "c1"}')
            await asyncio.wait_for(done.wait(), timeout=10)
            assert all(box and set(box) == {b'{"command_id": "c1"}'} for box in received)
            for s in subs:
                await s.unsubscribe()
        finally:
            for b in buses:
                await b.close()
    run(scenario())


def test_request_gets_the_reply_of_a_served_subject(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await Bus.connect(nats_url, prefix=nats_prefix)
        try:
            async def upper(data: bytes) -> bytes:
                return data.upper()

            await bus.serve(f"{nats_prefix}.echo", upper)
            assert await bus.request(f"{nats_prefix}.echo", b"ping") == b"PING"
            with pytest.raises(BusError, match="no responder"):
                await bus.request(f"{nats_prefix}.nobody", b"ping", timeout_s=1)
        finally:
            await bus.close()
    run(scenario())


def test_publishing_without_streams_says_to_create_them(nats_url: str, nats_prefix: str) -> None:
    async def scenario() -> None:
        bus = await Bus.connect(nats_url, prefix=nats_prefix)
        try:
            with pytest.raises(BusError, match="ensure_streams"):
                await bus.publish_command("pool-a", "c1", b"x")
            with pytest.raises(BusError, match="ensure_streams"):
                await bus.command_consumer("pool-a")
        finally:
            await bus.close()
    run(scenario())


def test_connecting_to_a_port_without_a_server_fails_clearly_and_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(BusError, match="cannot connect to nats"):
        run(Bus.connect("nats://127.0.0.1:1", connect_timeout_s=0.5))
    assert time.monotonic() - started < 5


def test_the_bus_reconnects_after_nats_restarts_and_stored_commands_survive(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_nats(tmp_path, port=port)

    async def scenario() -> None:
        nonlocal server
        bus = await Bus.connect(server.url, prefix="restart", publish_timeout_s=1.0)
        await bus.ensure_streams()
        try:
            await bus.publish_command("pool-a", "before", b"stored before the restart")
            server.stop()
            server = start_nats(tmp_path, port=port)
            async def published() -> bool:  # publishing fails until the client has reconnected
                try:
                    await bus.publish_command("pool-a", "after", b"after")
                except BusError:
                    return False
                return True

            await poll(published, timeout_s=15, what="the bus to reconnect and publish")
            consumer = await bus.command_consumer("pool-a")
            got = await fetch_all(consumer, 2)
            assert [d.data for d in got] == [b"stored before the restart", b"after"]
        finally:
            await bus.close()
    try:
        run(scenario())
    finally:
        server.stop()


def test_the_dispatch_floor_benchmark_reports_positive_figures(nats_url: str) -> None:
    result = measure_floor(nats_url, round_trips=30, consumers=2, messages=200, warmup=5)
    for key in ("floor_rtt_ms", "floor_rtt_p95_ms", "floor_rtt_min_ms", "floor_throughput_per_s"):
        assert result[key] > 0, key
    assert result["floor_rtt_min_ms"] <= result["floor_rtt_ms"] <= result["floor_rtt_p95_ms"]
    assert (result["round_trips"], result["consumers"], result["messages"]) == (30, 2, 200)


def test_round_trips_return_with_publishes_pending_and_from_several_tasks_at_once(nats_url: str,
                                                                                  nats_prefix: str) -> None:
    """The worker's pacing: a PING queued behind pending publishes; every round trip gets its PONG."""
    async def scenario() -> None:
        bus = await _bus(nats_url, nats_prefix)
        seen: list[bytes] = []

        async def got(data: bytes) -> None:
            seen.append(data)

        try:
            await bus.subscribe_core(f"{nats_prefix}.pings", got)
            for index in range(20):
                await bus.publish_core_nowait(f"{nats_prefix}.pings", b"%d" % index)
                await bus.round_trip()
            await asyncio.gather(*(bus.round_trip() for _ in range(10)))
            await poll(lambda: len(seen) == 20, timeout_s=10, what="the messages sent before the round trips")
            assert seen == [b"%d" % index for index in range(20)]
            assert bus._nc._pongs == []  # every PONG answered its own PING
        finally:
            await bus.close()
    run(scenario())
