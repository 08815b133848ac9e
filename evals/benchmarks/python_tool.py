"""The python tool's cost: per call on a warm pool, and a parallel python loop against the same noop loop.

1. per call: the python tool (`PythonTool.run` over a started `PythonPool` of one process) runs a
   trivial body, `result = x + 1` with a small input, `calls` times one after another; p50/p95 of each
   call's wall time in ms (the tool's whole path: request built, sent over the pipe, run in the child,
   reply read, envelope made). The pool's bare round trip (`PythonPool.run`) is timed beside it, and the
   child's own time (its `duration_ms`) too, so the split between the worker and the child is visible.
2. the loop: a parallel loop of `items` python items (the same trivial body), and the same loop with
   `kind: noop`, through the real engine (orchestrator in this process, one worker process, as
   `noetl dev up` runs them) at the same worker concurrency; items/s of each, from the event log's own
   timestamps (see dispatch_engine), and python's as a ratio to noop's. The two loops run in turns, each
   repetition's ratio is taken, and the median ratio is reported (a shared machine's load moves).

Servers: NOETL_NATS_URL / NOETL_PG_DSN at the entry points, else embedded ones in a temporary home.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control_plane.stack import Stack, StackConfig
from engine.protocol.partitions import PARTITIONS
from engine.runtime import eventloop
from engine.tools.base import ToolCall
from engine.tools.python_pool import PythonPool
from engine.tools.python_tool import PythonTool
from evals.benchmarks.bench_playbooks import tool_loop_playbook
from evals.benchmarks.dispatch import POOL, _machine, bench_servers
from evals.benchmarks.dispatch_engine import EngineBenchmarkError, Run, run_once
from evals.benchmarks.dispatch_floor import percentile

PER_CALL_P50_MS_MAX = 1.0  # per-call p50 of a trivial body on a warm pool, at most
LOOP_RATIO_MIN = 0.5  # python loop items/s / noop loop items/s at least
TRIVIAL_BODY = "result = x + 1"
LOOP_BODY = "result = item + 1"
DEFAULT_CONCURRENCY = 4  # the default worker pool's concurrency (`noetl dev up`)

Progress = Callable[[str], None]


def loop_playbook(items: int, kind: str) -> str:
    """The benchmark's loop of `items` items: python (`result = item + 1`) or noop."""
    tool: dict[str, Any] = {"kind": kind}
    if kind == "python":
        tool["code"] = LOOP_BODY
    return tool_loop_playbook(items, tool, name=f"python_bench_{kind}", path=f"bench/python_loop_{kind}")


# ------------------------------------------------------------------------------------ per call

def _stats(samples_ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(samples_ms), 4),
            "p95_ms": round(percentile(samples_ms, 0.95), 4), "min_ms": round(min(samples_ms), 4)}


async def measure_calls(calls: int, *, warmup: int = 50) -> dict[str, Any]:
    """p50/p95 of `calls` sequential calls of the python tool on a warm pool of one process; with the
    pool's bare round trip and the child's own time beside it."""
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    async with PythonPool(1) as pool:
        tool = PythonTool(pool)
        call = ToolCall(kind="python", config={"code": TRIVIAL_BODY}, input={"x": 41},
                        context={"workload": {"n": 1}}, step="bench", execution_id="bench")
        request: dict[str, Any] = {"code": TRIVIAL_BODY, "filename": "<python step>", "input": {"x": 41},
                   "context": {"workload": {"n": 1}}, "libs": [], "cwd": None}
        for _ in range(warmup):
            envelope = await tool.run(call)
            await pool.run(request)
        if envelope.status != "ok" or envelope.data != 42:
            raise EngineBenchmarkError(f"the trivial body did not return 42: {envelope}")
        tool_ms: list[float] = []
        pool_ms: list[float] = []
        child_ms: list[float] = []
        for _ in range(calls):
            started = time.perf_counter()
            await tool.run(call)
            tool_ms.append((time.perf_counter() - started) * 1000.0)
            started = time.perf_counter()
            reply = await pool.run(request)
            pool_ms.append((time.perf_counter() - started) * 1000.0)
            child_ms.append(float(reply.get("duration_ms") or 0.0))
    return {**_stats(tool_ms), "calls": calls, "body": TRIVIAL_BODY,
            "pool_round_trip": _stats(pool_ms), "child_run": _stats(child_ms)}


# ------------------------------------------------------------------------------------ loops

async def _loops(servers: Any, home: Path, *, items: int, repetitions: int, concurrency: int,
                 progress: Progress | None) -> tuple[list[Run], list[Run]]:
    note = progress or (lambda _: None)
    config = StackConfig(home=home, nats_url=servers.nats_url, pg_dsn=servers.pg_dsn,
                         prefix=f"bench{uuid.uuid4().hex[:10]}", workers={POOL: concurrency},
                         worker_processes=True)
    stack = Stack(config)
    timeout = 60.0 + items * 0.1
    try:
        await stack.start()
        if stack.orchestrator is None or len(stack.orchestrator.partitions) < PARTITIONS:
            raise EngineBenchmarkError("other orchestrator processes share this database; point "
                                       "NOETL_PG_DSN at a database of its own")
        assert stack.executions is not None
        registered: dict[str, tuple[str, int]] = {}
        for kind in ("noop", "python"):
            entry = await stack.executions.register(loop_playbook(items, kind), f"<bench {kind} loop>")
            registered[kind] = (entry.path, entry.version)
            warm = await stack.executions.register(loop_playbook(min(items, 100), kind), f"<warm {kind}>")
            note(f"warming up: a {min(items, 100)}-item {kind} loop")
            await run_once(stack, warm.path, warm.version, timeout)
        noops: list[Run] = []
        pythons: list[Run] = []
        for index in range(repetitions):
            note(f"repetition {index + 1}/{repetitions}: noop loop, python loop of {items} items")
            noops.append(await run_once(stack, *registered["noop"], timeout))
            pythons.append(await run_once(stack, *registered["python"], timeout))
    finally:
        await stack.close()
    return noops, pythons


def run_python_benchmark(*, calls: int = 2000, items: int = 2000, repetitions: int = 3,
                         concurrency: int = DEFAULT_CONCURRENCY, nats_url: str | None = None,
                         pg_dsn: str | None = None, home: Path | None = None,
                         progress: Progress | None = None) -> dict[str, Any]:
    """Measure per-call cost and the loops' throughput; return the figures, targets and machine.
    Must not be called from a running event loop."""
    if min(calls, items, repetitions, concurrency) < 1:
        raise ValueError("calls, items, repetitions and concurrency must be >= 1")
    note = progress or (lambda _: None)
    before = _machine()
    note(f"per call: {calls} calls of `{TRIVIAL_BODY}` on a warm pool")
    per_call = eventloop.run(measure_calls(calls))
    own_home = home is None
    root = Path(tempfile.mkdtemp(prefix="noetl-bench-python-")) if home is None else home
    try:
        with bench_servers(nats_url, pg_dsn, root) as servers:
            noops, pythons = eventloop.run(_loops(servers, root, items=items, repetitions=repetitions,
                                                  concurrency=concurrency, progress=progress))
    finally:
        if own_home:
            shutil.rmtree(root, ignore_errors=True)
    noop_per_s = [items / run.span_s for run in noops]
    python_per_s = [items / run.span_s for run in pythons]
    ratios = [p / n for p, n in zip(python_per_s, noop_per_s, strict=True)]
    ratio = statistics.median(ratios)
    after = _machine()
    return {
        "per_call_p50_ms": per_call["p50_ms"],
        "per_call_p95_ms": per_call["p95_ms"],
        "python_loop_items_per_s": round(statistics.median(python_per_s), 1),
        "noop_loop_items_per_s": round(statistics.median(noop_per_s), 1),
        "loop_ratio": round(ratio, 3),
        "targets": {"per_call_p50_ms_max": PER_CALL_P50_MS_MAX, "loop_ratio_min": LOOP_RATIO_MIN},
        "met": {"per_call": per_call["p50_ms"] <= PER_CALL_P50_MS_MAX, "loop_ratio": ratio >= LOOP_RATIO_MIN},
        "per_call": per_call,
        "pairs": [{"noop_items_per_s": round(n, 1), "python_items_per_s": round(p, 1), "ratio": round(r, 3)}
                  for n, p, r in zip(noop_per_s, python_per_s, ratios, strict=True)],
        "sizes": {"calls": calls, "items": items, "repetitions": repetitions,
                  "worker_concurrency": concurrency, "engine_workers": 1},
        "servers": {"nats": "given" if nats_url else "embedded",
                    "postgres": "given" if pg_dsn else "embedded"},
        "measured_from": "per call: perf_counter around each call; loops: events.recorded_at of "
                         "execution.started -> execution.completed",
        "ratios": "median of the repetitions' own ratios (noop and python loops run in turns)",
        "cpus": after["cpus"], "loadavg_before": before["loadavg"], "loadavg_after": after["loadavg"],
        "python": after["python"], "platform": after["platform"],
    }


def format_report(result: dict[str, Any]) -> str:
    """A few lines for a terminal."""
    met, targets, sizes = result["met"], result["targets"], result["sizes"]

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    per_call = result["per_call"]
    return "\n".join([
        f"per call: p50 {result['per_call_p50_ms']:.3f} ms, p95 {result['per_call_p95_ms']:.3f} ms over "
        f"{sizes['calls']} calls (pool round trip p50 {per_call['pool_round_trip']['p50_ms']:.3f} ms, "
        f"child {per_call['child_run']['p50_ms']:.3f} ms) "
        f"(target p50 <= {targets['per_call_p50_ms_max']} ms: {mark(met['per_call'])})",
        f"loop:     python {result['python_loop_items_per_s']:.0f} items/s, noop "
        f"{result['noop_loop_items_per_s']:.0f} items/s over {sizes['items']} items at concurrency "
        f"{sizes['worker_concurrency']} -> ratio {result['loop_ratio']:.3f} "
        f"(target >= {targets['loop_ratio_min']}: {mark(met['loop_ratio'])})",
        f"machine:  {result['cpus']} cpus, load {result['loadavg_before']} -> {result['loadavg_after']}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.benchmarks.python_tool", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls timed on a warm pool")
    parser.add_argument("--items", type=int, default=2000, help="items of each parallel loop")
    parser.add_argument("--repetitions", type=int, default=3, help="turns of noop loop and python loop")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="the worker's concurrency")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run_python_benchmark(
        calls=args.calls, items=args.items, repetitions=args.repetitions, concurrency=args.concurrency,
        nats_url=os.environ.get("NOETL_NATS_URL") or None, pg_dsn=os.environ.get("NOETL_PG_DSN") or None,
        progress=None if args.json else lambda line: print(line, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
