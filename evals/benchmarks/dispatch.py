"""The engine's dispatch cost against the raw JetStream floor, measured in one run on one machine.

1. the floor (evals.benchmarks.dispatch_floor): publish -> pull in another process -> ack -> reply;
   the median round trip, and the throughput with as many consumers as the engine has workers;
2. the engine's per-step overhead: a sequential chain of noop steps, its span divided by its length;
3. the engine's throughput: one parallel loop of noop items, items per second.

The floor and the engine are measured in turns, in the same processes and on the same servers: each
repetition takes the floor's round trips, then a chain, then the floor's throughput, then a loop, and
each ratio is the median of the repetitions' own ratios. A shared machine's load comes and goes within
seconds, so a floor measured once, before the engine starts, is not the baseline the engine ran
against. Servers: the given NATS and Postgres (NOETL_NATS_URL / NOETL_PG_DSN at the entry points), else
embedded ones in a fresh temporary NOETL_HOME, stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control_plane.stack import Stack, StackConfig
from engine.bus.jetstream import Bus
from engine.runtime import eventloop
from engine.runtime.embedded import start_nats, start_postgres
from evals.benchmarks.dispatch_engine import EngineRuns, Run, Waiter
from evals.benchmarks.dispatch_floor import CONSUMER_BATCH, PATH, FloorSession, percentile

STEP_OVERHEAD_RATIO_MAX = 1.5  # step_overhead_ms / floor_rtt_ms at most
LOOP_THROUGHPUT_RATIO_MIN = 0.6  # loop_throughput_per_s / floor_throughput_per_s at least
POOL = "default"  # the pool the benchmark playbooks' steps run in

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Servers:
    nats_url: str
    pg_dsn: str
    nats_embedded: bool
    pg_embedded: bool
    pids: dict[str, int]  # pid of each embedded server ("nats", "postgres"), for CPU accounting


@contextlib.contextmanager
def bench_servers(nats_url: str | None, pg_dsn: str | None, home: Path) -> Iterator[Servers]:
    """The given servers, or embedded ones under `home` that this call starts and stops."""
    started: list[Any] = []
    nats_embedded, pg_embedded = nats_url is None, pg_dsn is None
    pids: dict[str, int] = {}
    try:
        if nats_url is None:
            nats = start_nats(home)
            started.append(nats)
            nats_url, pids["nats"] = nats.url, nats.pid
        if pg_dsn is None:
            postgres = start_postgres(home)
            started.append(postgres)
            pg_dsn, pids["postgres"] = postgres.dsn, postgres.pid
        yield Servers(nats_url, pg_dsn, nats_embedded, pg_embedded, pids)
    finally:
        for server in reversed(started):
            with contextlib.suppress(Exception):
                server.stop()


def _machine() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
            "python": platform.python_version(), "platform": platform.platform(terse=True)}


async def _paired(servers: Servers, home: Path, *, chain_steps: int, loop_items: int, round_trips: int,
                  floor_messages: int, repetitions: int, concurrency: int, warmup: bool, waiter: Waiter,
                  progress: Progress | None) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(floor figures, engine figures, the repetitions' pairs): floor and engine in turns."""
    note = progress or (lambda _: None)
    config = StackConfig(home=home, nats_url=servers.nats_url, pg_dsn=servers.pg_dsn,
                         prefix=f"bench{uuid.uuid4().hex[:10]}", workers={POOL: concurrency},
                         worker_processes=True)  # as `noetl dev up` runs them: beside the orchestrator
    stack = Stack(config)
    try:
        async with FloorSession(servers.nats_url, consumers=1, nats_pid=servers.pids.get("nats")) as floor:
            await stack.start()
            engine = EngineRuns(stack, chain_steps=chain_steps, loop_items=loop_items, waiter=waiter,
                                pids=servers.pids)
            note("engine: registering" + (" and warming up" if warmup else ""))
            await engine.register(warmup=warmup)
            if warmup:
                await floor.round_trips(50)
            rtts: list[list[float]] = []
            throughputs: list[float] = []
            floor_cpu: list[dict[str, Any]] = []
            chains: list[Run] = []
            loops: list[Run] = []
            pairs: list[dict[str, Any]] = []
            for index in range(repetitions):
                note(f"repetition {index + 1}/{repetitions}: floor round trips, chain of {chain_steps}, "
                     f"floor throughput, loop of {loop_items}")
                rtts.append(await floor.round_trips(round_trips))
                chains.append(await engine.chain())
                per_s, cpu = await floor.throughput(floor_messages)
                throughputs.append(per_s)
                floor_cpu.append(cpu)
                loops.append(await engine.loop())
                rtt_ms = statistics.median(rtts[-1])
                pairs.append({"floor_rtt_ms": round(rtt_ms, 4),
                              "step_overhead_ms": round(engine.step_ms(chains[-1]), 4),
                              "step_overhead_ratio": round(engine.step_ms(chains[-1]) / rtt_ms, 3),
                              "floor_throughput_per_s": round(per_s, 1),
                              "loop_throughput_per_s": round(engine.items_per_s(loops[-1]), 1),
                              "loop_throughput_ratio": round(engine.items_per_s(loops[-1]) / per_s, 3)})
            engine_figures = engine.summary(chains, loops)
    finally:
        await stack.close()
        if not servers.nats_embedded:  # leave no streams on a shared server
            with contextlib.suppress(Exception):
                bus = await Bus.connect(servers.nats_url, config.prefix)
                await bus.delete_streams()
                await bus.close()
    every_rtt = [sample for samples in rtts for sample in samples]
    middle = sorted(range(repetitions), key=lambda i: throughputs[i])[repetitions // 2]
    floor_figures = {
        "floor_rtt_ms": round(statistics.median(p["floor_rtt_ms"] for p in pairs), 4),
        "floor_rtt_p95_ms": round(percentile(every_rtt, 0.95), 4),
        "floor_rtt_min_ms": round(min(every_rtt), 4),
        "floor_throughput_per_s": round(statistics.median(throughputs), 1),
        "floor_cpu_per_message_ms": floor_cpu[middle],
        "round_trips": round_trips, "messages": floor_messages, "consumers": 1,
        "ack": "confirmed", "path": PATH,
    }
    return floor_figures, engine_figures, pairs


def run_dispatch_benchmark(*, chain_steps: int = 200, loop_items: int = 2000, round_trips: int = 1000,
                           floor_messages: int | None = None, repetitions: int = 5,
                           concurrency: int = CONSUMER_BATCH, warmup: bool = True,
                           nats_url: str | None = None,
                           pg_dsn: str | None = None, home: Path | None = None,
                           waiter: Waiter = "light", progress: Progress | None = None) -> dict[str, Any]:
    """Measure the floor and the engine in one run; return the figures, ratios, targets and machine.

    `concurrency` is the engine's worker pool size (one Worker, one pull consumer); the floor runs with
    as many consumer processes as the engine has workers (one). Its default is the floor consumer's
    depth of work in hand (it fetches and settles CONSUMER_BATCH messages at once), so both sides of
    the throughput ratio hold the same number of messages at a time. `floor_messages` defaults to
    max(loop_items, 2000). Must not be called from a running event loop."""
    if min(chain_steps, loop_items, round_trips, repetitions, concurrency) < 1:
        raise ValueError("chain_steps, loop_items, round_trips, repetitions and concurrency must be >= 1")
    own_home = home is None
    root = Path(tempfile.mkdtemp(prefix="noetl-bench-")) if home is None else home
    consumers = 1  # the stack runs one Worker (one pull consumer) per pool
    before = _machine()
    try:
        with bench_servers(nats_url, pg_dsn, root) as servers:
            floor, engine, pairs = eventloop.run(_paired(
                servers, root, chain_steps=chain_steps, loop_items=loop_items, round_trips=round_trips,
                floor_messages=floor_messages or max(loop_items, 2000), repetitions=repetitions,
                concurrency=concurrency, warmup=warmup, waiter=waiter, progress=progress))
    finally:
        if own_home:
            shutil.rmtree(root, ignore_errors=True)
    where = {"nats": "given" if nats_url else "embedded", "postgres": "given" if pg_dsn else "embedded"}
    return _report(floor, engine, pairs, before=before, servers=where,
                   chain_steps=chain_steps, loop_items=loop_items, repetitions=repetitions,
                   concurrency=concurrency, consumers=consumers)


def _report(floor: dict[str, Any], engine: dict[str, Any], pairs: list[dict[str, Any]], *,
            before: dict[str, Any],
            servers: dict[str, str], chain_steps: int, loop_items: int, repetitions: int,
            concurrency: int, consumers: int) -> dict[str, Any]:
    step_ratio = statistics.median(p["step_overhead_ratio"] for p in pairs)
    loop_ratio = statistics.median(p["loop_throughput_ratio"] for p in pairs)
    after = _machine()
    return {
        "floor_rtt_ms": floor["floor_rtt_ms"],
        "floor_rtt_p95_ms": floor["floor_rtt_p95_ms"],
        "step_overhead_ms": engine["step_overhead_ms"],
        "step_overhead_ratio": round(step_ratio, 3),
        "floor_throughput_per_s": floor["floor_throughput_per_s"],
        "loop_throughput_per_s": engine["loop_throughput_per_s"],
        "loop_throughput_ratio": round(loop_ratio, 3),
        "targets": {"step_overhead_ratio_max": STEP_OVERHEAD_RATIO_MAX,
                    "loop_throughput_ratio_min": LOOP_THROUGHPUT_RATIO_MIN},
        "met": {"step_overhead": step_ratio <= STEP_OVERHEAD_RATIO_MAX,
                "loop_throughput": loop_ratio >= LOOP_THROUGHPUT_RATIO_MIN},
        "cpus": after["cpus"],
        "loadavg_before": before["loadavg"],
        "loadavg_after": after["loadavg"],
        "python": after["python"],
        "platform": after["platform"],
        "servers": servers,
        "sizes": {"chain_steps": chain_steps, "loop_items": loop_items, "repetitions": repetitions,
                  "round_trips": floor["round_trips"], "floor_messages": floor["messages"],
                  "floor_consumers": consumers, "floor_consumer_batch": CONSUMER_BATCH,
                  "engine_workers": 1, "worker_concurrency": concurrency},
        "ratios": "median of the repetitions' own ratios (floor and engine measured in turns)",
        "pairs": pairs,
        "floor": {k: v for k, v in floor.items()
                  if k not in ("floor_rtt_ms", "floor_rtt_p95_ms", "floor_throughput_per_s", "cpus",
                               "loadavg_1m", "python", "round_trips", "messages", "consumers")},
        "engine": {k: v for k, v in engine.items()
                   if k not in ("step_overhead_ms", "loop_throughput_per_s")},
    }


def format_report(result: dict[str, Any]) -> str:
    """A few lines for a terminal."""
    met = result["met"]
    targets = result["targets"]

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    sizes = result["sizes"]
    return "\n".join([
        f"floor:    {result['floor_rtt_ms']:.3f} ms per round trip (median of {sizes['round_trips']}), "
        f"{result['floor_throughput_per_s']:.0f} msg/s with {sizes['floor_consumers']} consumer(s)",
        f"chain:    {result['step_overhead_ms']:.3f} ms per step over {sizes['chain_steps']} steps -> "
        f"ratio {result['step_overhead_ratio']:.2f} (target <= {targets['step_overhead_ratio_max']}: "
        f"{mark(met['step_overhead'])})",
        f"loop:     {result['loop_throughput_per_s']:.0f} items/s over {sizes['loop_items']} items -> "
        f"ratio {result['loop_throughput_ratio']:.3f} (target >= {targets['loop_throughput_ratio_min']}: "
        f"{mark(met['loop_throughput'])})",
        f"machine:  {result['cpus']} cpus, load {result['loadavg_before']} -> {result['loadavg_after']}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.benchmarks.dispatch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="length of the sequential chain")
    parser.add_argument("--items", type=int, default=2000, help="items of the parallel loop")
    parser.add_argument("--round-trips", type=int, default=1000, help="floor round trips")
    parser.add_argument("--repetitions", type=int, default=5, help="turns of floor, chain, floor and loop")
    parser.add_argument("--concurrency", type=int, default=CONSUMER_BATCH,
                        help="the worker pool's concurrency (default: the floor consumer's batch)")
    parser.add_argument("--waiter", choices=("light", "service"), default="light",
                        help="how the client waits for an execution (see dispatch_engine)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_dispatch_benchmark(
        chain_steps=args.steps, loop_items=args.items, round_trips=args.round_trips,
        repetitions=args.repetitions, concurrency=args.concurrency, waiter=args.waiter,
        nats_url=os.environ.get("NOETL_NATS_URL") or None, pg_dsn=os.environ.get("NOETL_PG_DSN") or None,
        progress=None if args.json else lambda line: print(line, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
