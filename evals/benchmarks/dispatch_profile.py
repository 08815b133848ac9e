"""Where the engine's time per step goes: timers around the hot path, a timeline from the log, cProfile.

`python -m evals.benchmarks.dispatch_profile --what chain --size 200 [--cprofile out.pstats]` starts
embedded servers in a temporary home, warms up, then runs one execution with

- timers wrapped around the awaited operations of the hot path (JetStream publishes and confirmed acks,
  fetches, Postgres appends and reads) and the synchronous ones (fire, template rendering, pydantic);
  the wrappers are installed by this module at run time, the engine's code is not changed;
- the per-step timeline read back from the event log (step.scheduled committed -> step.started built
  by the worker -> step.succeeded built -> step.succeeded committed);
- optionally cProfile over the whole event-loop thread (orchestrator and worker share it).

Awaited timers measure wall time and overlap with each other (one event loop runs the orchestrator,
the worker and the waiting client); on a sequential chain they are mostly on the critical path.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from control_plane.stack import Stack, StackConfig
from engine.runtime import eventloop
from evals.benchmarks.bench_playbooks import chain_playbook, loop_playbook
from evals.benchmarks.cpu import cpu_seconds
from evals.benchmarks.dispatch import bench_servers
from evals.benchmarks.dispatch_engine import Waiter, run_once, wait_completed


class Timers:
    """Total seconds and calls per label."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.on = False

    def add(self, label: str, seconds: float) -> None:
        if self.on:
            self.total[label] += seconds
            self.calls[label] += 1

    def table(self, units: int) -> list[dict[str, Any]]:
        rows = [{"what": label, "calls": self.calls[label], "total_ms": round(total * 1000, 1),
                 "mean_ms": round(total * 1000 / max(self.calls[label], 1), 4),
                 "per_unit_ms": round(total * 1000 / units, 4)}
                for label, total in self.total.items()]
        return sorted(rows, key=lambda row: -row["total_ms"])


def _wrap_async(owner: Any, name: str, timers: Timers, label: Callable[..., str] | str) -> Callable[[], None]:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            timers.add(label(*args, **kwargs) if callable(label) else label, time.perf_counter() - started)

    setattr(owner, name, timed)
    return lambda: setattr(owner, name, original)


def _wrap_sync(owner: Any, name: str, timers: Timers, label: str) -> Callable[[], None]:
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timers.add(label, time.perf_counter() - started)

    setattr(owner, name, timed)
    return lambda: setattr(owner, name, original)


def _publish_label(_self: Any, subject: str, *_: Any, **__: Any) -> str:
    kind = "command" if ".cmd." in subject else "event"
    return f"bus: publish {kind} (await pub-ack)"


def _confirmed_label(_self: Any, what: str, *_: Any) -> str:
    return f"bus: confirmed {what}"


def _fetch_label(self: Any, *_: Any, **__: Any) -> str:
    return f"bus: fetch by {self.durable} (incl. idle wait)"


@contextlib.contextmanager
def instrumented(timers: Timers) -> Iterator[None]:
    """Install the timers on the hot path for the duration of the block."""
    from control_plane.services.executions import ExecutionService
    from control_plane.store.events import EventStore
    from control_plane.store.executions import ExecutionStore
    from engine.bus.jetstream import Bus, Consumer, Delivery
    from engine.dsl.templates import TemplateRenderer
    from engine.protocol.commands import RunStep
    from engine.protocol.events import Event
    from engine.runtime import orchestrator, worker
    from engine.runtime.step_runner import StepRunner

    undo = [
        _wrap_async(Bus, "_publish", timers, _publish_label),
        _wrap_async(Delivery, "_confirmed", timers, _confirmed_label),
        _wrap_async(Consumer, "fetch", timers, _fetch_label),
        _wrap_async(EventStore, "append", timers, "pg: append (one transaction)"),
        _wrap_async(EventStore, "events", timers, "pg: read events (wait poll, _load)"),
        _wrap_async(ExecutionStore, "set_status", timers, "pg: set_status"),
        _wrap_async(ExecutionService, "wait", timers, "client: ExecutionService.wait (whole run)"),
        _wrap_async(orchestrator.Orchestrator, "handle", timers, "orchestrator: handle(batch)"),
        _wrap_async(orchestrator.Orchestrator, "_load", timers, "orchestrator: _load"),
        _wrap_async(StepRunner, "run", timers, "worker: StepRunner.run (incl. step.started publish)"),
        _wrap_async(worker.Worker, "_serve", timers, "worker: _serve (run + outcome publish + ack)"),
        _wrap_sync(orchestrator, "fire", timers, "orchestrator: fire()"),
        _wrap_sync(TemplateRenderer, "render", timers, "templates: render"),
        _wrap_sync(Event, "model_validate_json", timers, "pydantic: Event.model_validate_json"),
        _wrap_sync(RunStep, "model_validate_json", timers, "pydantic: RunStep.model_validate_json"),
    ]
    timers.on = True
    try:
        yield
    finally:
        timers.on = False
        for restore in reversed(undo):
            restore()


async def _timeline(stack: Stack, execution_id: str) -> dict[str, Any]:
    """Median milliseconds of each leg of a step, from the event log's own timestamps."""
    assert stack.store is not None
    rows = await stack.store.timings.step_timeline(execution_id)
    by_step: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in rows:
        by_step[row["step"]][row["type"]] = row
    legs: dict[str, list[float]] = defaultdict(list)

    def ms(later: Any, earlier: Any) -> float:
        return (later - earlier).total_seconds() * 1000

    for events in by_step.values():
        if len(events) != 3:
            continue
        scheduled, started, done = events["step.scheduled"], events["step.started"], events["step.succeeded"]
        legs["1 scheduled committed -> step.started built (cmd publish, worker fetch, parse)"].append(
            ms(started["built_at"], scheduled["recorded_at"]))
        legs["2 step.started built -> step.succeeded built (publish started, run noop)"].append(
            ms(done["built_at"], started["built_at"]))
        legs["3 step.succeeded built -> committed (publish, orchestrator fetch, fire, append)"].append(
            ms(done["recorded_at"], done["built_at"]))
        legs["  (step.started committed - built)"].append(ms(started["recorded_at"], started["built_at"]))
    return {leg: round(statistics.median(values), 3) for leg, values in sorted(legs.items())}


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by this process and each embedded server with its children."""
    return cpu_seconds(pids, own="python (orchestrator + worker + client)")


async def profile(what: str, size: int, concurrency: int, cprofile_path: Path | None,
                  home: Path, waiter: Waiter = "light") -> dict[str, Any]:
    with bench_servers(None, None, home) as servers:
        config = StackConfig(home=home, nats_url=servers.nats_url, pg_dsn=servers.pg_dsn,
                             workers={"default": concurrency})
        async with Stack(config) as stack:
            assert stack.executions is not None
            text = chain_playbook(size) if what == "chain" else loop_playbook(size)
            entry = await stack.executions.register(text, f"<profile {what}>")
            await run_once(stack, entry.path, entry.version, 600, waiter)  # warm-up: same size and paths
            timers = Timers()
            profiler = cProfile.Profile() if cprofile_path else None
            cpu_before = _cpu_seconds(servers.pids)
            with instrumented(timers):
                if profiler is not None:
                    profiler.enable()
                started = time.perf_counter()
                execution_id = await stack.executions.start(entry.path, version=entry.version)
                await wait_completed(stack, execution_id, 600, waiter)
                wall = time.perf_counter() - started
                if profiler is not None:
                    profiler.disable()
            cpu_after = _cpu_seconds(servers.pids)
            if profiler is not None and cprofile_path is not None:
                profiler.dump_stats(str(cprofile_path))
            timeline = await _timeline(stack, execution_id) if what == "chain" else {}
    return {"what": what, "size": size, "waiter": waiter, "wall_s": round(wall, 3),
            "wall_per_unit_ms": round(wall * 1000 / size, 3),
            "cpu_per_unit_ms": {name: round((cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / size, 3)
                                for name in cpu_after},
            "timers": timers.table(size),
            "timeline_median_ms": timeline}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.benchmarks.dispatch_profile",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=("chain", "loop"), default="chain")
    parser.add_argument("--size", type=int, default=200, help="steps of the chain or items of the loop")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--cprofile", type=Path, help="write cProfile stats of the measured run here")
    parser.add_argument("--waiter", choices=("light", "service"), default="light",
                        help="how the client waits: poll the execution row, or ExecutionService.wait")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="noetl-profile-"))
    try:
        result = eventloop.run(profile(args.what, args.size, args.concurrency, args.cprofile, home,
                                     args.waiter))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
