"""The raw JetStream dispatch floor: publish -> pull in another process -> ack -> core-NATS reply."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from engine.bus.jetstream import Bus, Delivery
from engine.runtime import eventloop
from engine.runtime.embedded import start_nats
from evals.benchmarks.cpu import cpu_seconds, per_unit_ms

logger = logging.getLogger(__name__)

POOL = "bench"
CONSUMER_BATCH = 64  # messages a floor consumer fetches and settles at once: its depth of work in hand
_READY_TIMEOUT_S = 60.0
_REPLY_TIMEOUT_S = 30.0


def _subjects(prefix: str) -> tuple[str, str, str]:
    """(ready, reply, stop): core NATS subjects between the publisher and its consumer processes."""
    return f"{prefix}.bench.ready", f"{prefix}.bench.reply", f"{prefix}.bench.stop"


# ------------------------------------------------------------------------------- consumer (child process)


async def _consume(url: str, prefix: str, worker: int, confirmed_ack: bool) -> None:
    ready, reply, stop_subject = _subjects(prefix)
    bus = await Bus.connect(url, prefix=prefix, name=f"bench-consumer-{worker}")
    stop = asyncio.Event()

    async def on_stop(_: bytes) -> None:
        stop.set()

    async def settle(delivery: Delivery) -> None:
        if confirmed_ack:
            await delivery.ack()  # confirmed by the server before the reply goes out
        else:
            await delivery.ack_nowait()
        await bus.publish_core_nowait(reply, delivery.data)

    try:
        await bus.subscribe_core(stop_subject, on_stop)
        consumer = await bus.command_consumer(POOL, ack_wait_s=30)
        await bus.publish_core(ready, str(worker).encode())
        while not stop.is_set():
            batch = await consumer.fetch(batch=CONSUMER_BATCH, timeout=0.25)
            if batch:
                await asyncio.gather(*(settle(d) for d in batch))
    finally:
        await bus.close()


def _consumer_main(url: str, prefix: str, worker: int, confirmed_ack: bool) -> None:
    eventloop.run(_consume(url, prefix, worker, confirmed_ack))


# ------------------------------------------------------------------------------------ publisher (parent)


class _Replies:
    """Futures of outstanding round trips, resolved by the consumers' core-NATS replies."""

    def __init__(self) -> None:
        self.waiting: dict[bytes, asyncio.Future[float]] = {}
        self.count = 0
        self.all_done = asyncio.Event()
        self.expected = -1

    async def on_reply(self, data: bytes) -> None:
        now = time.perf_counter()
        future = self.waiting.pop(data, None)
        if future is not None and not future.done():
            future.set_result(now)
        self.count += 1
        if self.count == self.expected:
            self.all_done.set()


async def _wait_ready(bus: Bus, prefix: str, consumers: int, processes: list[Any]) -> None:
    seen: set[bytes] = set()
    all_ready = asyncio.Event()

    async def on_ready(data: bytes) -> None:
        seen.add(data)
        if len(seen) == consumers:
            all_ready.set()

    ready_subject = _subjects(prefix)[0]
    sub = await bus.subscribe_core(ready_subject, on_ready)
    try:
        for index, process in enumerate(processes):
            process.start()
            logger.debug("started consumer %d (pid %s)", index, process.pid)
        await asyncio.wait_for(all_ready.wait(), timeout=_READY_TIMEOUT_S)
    except TimeoutError as exc:
        dead = [p.pid for p in processes if not p.is_alive()]
        raise RuntimeError(f"only {len(seen)} of {consumers} consumer processes became ready within "
                           f"{_READY_TIMEOUT_S:.0f} s (exited: {dead}); run one by hand to see its "
                           "error") from exc
    finally:
        await sub.unsubscribe()


async def _round_trips(bus: Bus, replies: _Replies, n: int, tag: str) -> list[float]:
    """Sequential round trips; each sample in milliseconds."""
    loop = asyncio.get_running_loop()
    samples = []
    for i in range(n):
        key = f"{tag}{i}".encode()
        future: asyncio.Future[float] = loop.create_future()
        replies.waiting[key] = future
        started = time.perf_counter()
        await bus.publish_command(POOL, key.decode(), key)
        finished = await asyncio.wait_for(future, timeout=_REPLY_TIMEOUT_S)
        samples.append((finished - started) * 1000.0)
    return samples


async def _throughput(bus: Bus, replies: _Replies, messages: int, window: int = 256, tag: str = "t") -> float:
    """Publish `messages` commands (at most `window` publishes in flight); messages per second until
    the last reply came back."""
    replies.count = 0
    replies.expected = messages
    replies.all_done.clear()
    limit = asyncio.Semaphore(window)

    async def publish(i: int) -> None:
        async with limit:
            await bus.publish_command(POOL, f"{tag}{i}", f"{tag}{i}".encode())

    started = time.perf_counter()
    await asyncio.gather(*(publish(i) for i in range(messages)))
    await asyncio.wait_for(replies.all_done.wait(), timeout=_REPLY_TIMEOUT_S + messages / 100)
    return messages / (time.perf_counter() - started)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class FloorSession:
    """The floor's publisher (this process) and its consumer processes, kept up so that round trips and
    throughput can be measured several times, interleaved with other measurements."""

    def __init__(self, nats_url: str, *, consumers: int = 1, confirmed_ack: bool = True,
                 nats_pid: int | None = None) -> None:
        self.nats_url = nats_url
        self.consumers = consumers
        self.confirmed_ack = confirmed_ack
        self.nats_pid = nats_pid
        self.prefix = f"bench{uuid.uuid4().hex[:10]}"
        self._bus: Bus | None = None
        self._replies = _Replies()
        self._processes: list[Any] = []
        self._tag = 0

    async def __aenter__(self) -> FloorSession:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _start(self) -> None:
        self._bus = await Bus.connect(self.nats_url, prefix=self.prefix, name="bench-publisher")
        context = multiprocessing.get_context("spawn")
        self._processes = [context.Process(target=_consumer_main,
                                           args=(self.nats_url, self.prefix, i, self.confirmed_ack),
                                           daemon=True)
                           for i in range(self.consumers)]
        await self._bus.ensure_streams()
        await self._bus.command_consumer(POOL, ack_wait_s=30)  # created once here; the children bind to it
        await self._bus.subscribe_core(_subjects(self.prefix)[1], self._replies.on_reply)
        await _wait_ready(self._bus, self.prefix, self.consumers, self._processes)

    async def round_trips(self, n: int) -> list[float]:
        """`n` sequential round trips, in milliseconds."""
        assert self._bus is not None, "use the session as an async context manager"
        self._tag += 1
        return await _round_trips(self._bus, self._replies, n, f"r{self._tag}-")

    async def throughput(self, messages: int) -> tuple[float, dict[str, Any]]:
        """(messages per second, CPU milliseconds per message by process) for `messages` commands."""
        assert self._bus is not None, "use the session as an async context manager"
        pids = {f"child-{p.pid}": p.pid for p in self._processes if p.pid is not None}
        if self.nats_pid is not None:
            pids["nats"] = self.nats_pid
        self._tag += 1
        cpu_before = cpu_seconds(pids, own="publisher")
        per_s = await _throughput(self._bus, self._replies, messages, tag=f"t{self._tag}-")
        cpu = per_unit_ms(cpu_before, cpu_seconds(pids, own="publisher"), messages, children="consumers")
        return per_s, cpu

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.publish_core(_subjects(self.prefix)[2], b"stop")
        for process in self._processes:
            if process.pid is not None:
                await asyncio.to_thread(process.join, 10)
                if process.is_alive():
                    process.kill()
                    await asyncio.to_thread(process.join, 5)
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.delete_streams()
            await bus.close()


PATH = "publish (await pub-ack) -> pull in another process -> ack -> core-NATS reply"


async def _measure(nats_url: str, round_trips: int, consumers: int, messages: int, warmup: int,
                   confirmed_ack: bool, nats_pid: int | None = None) -> dict[str, Any]:
    async with FloorSession(nats_url, consumers=consumers, confirmed_ack=confirmed_ack,
                            nats_pid=nats_pid) as floor:
        await floor.round_trips(warmup)
        rtt = await floor.round_trips(round_trips)
        per_s, cpu = await floor.throughput(messages)
    return {
        "floor_rtt_ms": round(statistics.median(rtt), 4),
        "floor_rtt_p95_ms": round(percentile(rtt, 0.95), 4),
        "floor_rtt_min_ms": round(min(rtt), 4),
        "floor_throughput_per_s": round(per_s, 1),
        "floor_cpu_per_message_ms": cpu,
        "round_trips": round_trips,
        "consumers": consumers,
        "messages": messages,
        "ack": "confirmed" if confirmed_ack else "nowait",
        "path": PATH,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews the figures
    }


def measure_floor(nats_url: str, *, round_trips: int = 1000, consumers: int = 2, messages: int = 5000,
                  warmup: int = 50, confirmed_ack: bool = True, nats_pid: int | None = None
                  ) -> dict[str, Any]:
    """Measure the dispatch floor against the nats-server at `nats_url` (JetStream enabled): the median
    and p95 round trip over `round_trips` sequential trips, and the throughput of `messages` commands
    through `consumers` consumer processes. `confirmed_ack` waits for the server to confirm each ack
    (the engine's path); False sends the ack and goes on. `nats_pid` (an embedded server) adds the
    server's CPU to `floor_cpu_per_message_ms`. Must not be called from a running event loop."""
    if round_trips < 1 or consumers < 1 or messages < 1:
        raise ValueError("round_trips, consumers and messages must each be at least 1")
    return eventloop.run(_measure(nats_url, round_trips, consumers, messages, warmup, confirmed_ack,
                                  nats_pid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.benchmarks.dispatch_floor",
                                     description=__doc__)
    parser.add_argument("--url", help="nats-server with JetStream (default: start an embedded one)")
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--ack", choices=("confirmed", "nowait"), default="confirmed",
                        help="wait for the server to confirm each ack (default), or not")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    data_dir: Path | None = None
    server = None
    try:
        url = args.url
        if url is None:
            data_dir = Path(tempfile.mkdtemp(prefix="noetl-bench-"))
            server = start_nats(data_dir)
            url = server.url
        result = measure_floor(url, round_trips=args.round_trips, consumers=args.consumers,
                               messages=args.messages, confirmed_ack=args.ack == "confirmed")
        result["nats_url"] = url if args.url else "embedded"
    finally:
        if server is not None:
            server.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"dispatch floor: median {result['floor_rtt_ms']:.3f} ms, "
              f"p95 {result['floor_rtt_p95_ms']:.3f} ms over {args.round_trips} round trips; "
              f"{result['floor_throughput_per_s']:.0f} msg/s with {args.consumers} consumer processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
