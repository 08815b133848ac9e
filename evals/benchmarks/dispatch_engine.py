"""The engine's side of the dispatch benchmark: run the chain and the loop on a started Stack and time them.

Times come from the event log itself: `recorded_at` of the execution's `execution.started` and
`execution.completed` rows, i.e. Postgres' clock when each event was written in the transaction that
committed it. So the span is the engine's own, from the moment the execution was taken up to the moment
its completion was durable, free of the client's polling interval. The wall clock around submit/wait
(which adds the publish of the start event and up to one poll interval) is reported beside it.

The client waits by polling the execution row's `ended_at` (set in the transaction that stores the
terminal event), one single-row query every 10 ms, instead of `ExecutionService.wait`, which re-reads and
parses every new event every 20 ms: the client shares the event loop and the database with the engine
here, and the benchmark should time the engine, not its observer. `waiter="service"` uses `wait`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from control_plane.stack import Stack
from engine.protocol.partitions import PARTITIONS
from evals.benchmarks.bench_playbooks import chain_playbook, loop_playbook
from evals.benchmarks.cpu import children_of_self, cpu_seconds, per_unit_ms

SPAN_SOURCE = ("events.recorded_at (Postgres clock, in the committing transaction) of execution.started "
               "-> execution.completed")
POLL_S = 0.01

Waiter = Literal["light", "service"]


class EngineBenchmarkError(RuntimeError):
    """An execution of the benchmark did not complete, or the stack cannot run it."""


@dataclass(frozen=True, slots=True)
class Run:
    """One execution: its span in the log (seconds), the wall time around submit/wait, its event count."""

    span_s: float
    wall_s: float
    events: int
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds by process while it ran


async def _wait_light(stack: Stack, execution_id: str, timeout_s: float) -> tuple[str, Any]:
    """(status, error) of the execution once its terminal event is stored; polls one row."""
    assert stack.store is not None
    deadline = time.monotonic() + timeout_s
    while True:
        if await stack.store.timings.ended_at(execution_id) is not None:
            terminal = await stack.store.timings.terminal(execution_id)
            if terminal is not None:
                return terminal[0].split(".", 1)[1], terminal[1]
        if time.monotonic() > deadline:
            raise EngineBenchmarkError(f"execution {execution_id} did not finish within {timeout_s} s")
        await asyncio.sleep(POLL_S)


async def wait_completed(stack: Stack, execution_id: str, timeout_s: float, waiter: Waiter = "light") -> None:
    """Return once the execution completed; EngineBenchmarkError when it failed or was cancelled."""
    assert stack.executions is not None
    if waiter == "service":
        summary = await stack.executions.wait(execution_id, timeout_s=timeout_s)
        status, error = summary["status"], summary.get("error")
    else:
        status, error = await _wait_light(stack, execution_id, timeout_s)
    if status != "completed":
        raise EngineBenchmarkError(f"benchmark execution {execution_id} ended {status}: {error}")


async def run_once(stack: Stack, path: str, version: int, timeout_s: float,
                   waiter: Waiter = "light", pids: Mapping[str, int] | None = None) -> Run:
    """Start one execution of a registered playbook, wait for it, and read its span from the log;
    with the CPU seconds each process spent meanwhile when `pids` (the servers) are given: this
    process (orchestrator and client), the worker processes, the servers."""
    assert stack.executions is not None and stack.store is not None
    servers = set((pids or {}).values())  # a server started by this process is counted once, as itself
    workers = {name: pid for name, pid in children_of_self().items() if pid not in servers}
    watched = {**(pids or {}), **workers} if pids is not None else {}
    cpu_before = cpu_seconds(watched, own="orchestrator") if pids is not None else {}
    started = time.perf_counter()
    execution_id = await stack.executions.start(path, version=version)
    await wait_completed(stack, execution_id, timeout_s, waiter)
    wall_s = time.perf_counter() - started
    at = await stack.store.timings.started_completed(execution_id)
    if len(at) != 2:
        raise EngineBenchmarkError(f"execution {execution_id} lacks its started/completed events: {at}")
    span_s = (at["execution.completed"] - at["execution.started"]).total_seconds()
    cpu_after = cpu_seconds(watched, own="orchestrator") if pids is not None else {}
    count = await stack.store.timings.event_count(execution_id)
    return Run(span_s=span_s, wall_s=wall_s, events=count,
               cpu_s={k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()})


def cpu_per_unit(runs: list[Run], units: int) -> dict[str, Any]:
    """CPU ms per unit by process for the run of median span ({} without CPU figures)."""
    run = sorted(runs, key=lambda r: r.span_s)[len(runs) // 2]
    if not run.cpu_s:
        return {}
    return per_unit_ms({}, run.cpu_s, units, children="workers")


@dataclass(frozen=True, slots=True)
class Registered:
    path: str
    version: int


class EngineRuns:
    """The benchmark's chain and loop registered on a started Stack, run one execution at a time."""

    def __init__(self, stack: Stack, *, chain_steps: int, loop_items: int, waiter: Waiter = "light",
                 pids: Mapping[str, int] | None = None) -> None:
        if stack.orchestrator is None or len(stack.orchestrator.partitions) < PARTITIONS:
            raise EngineBenchmarkError(
                "other orchestrator processes share this database, so some of this benchmark's executions "
                "would run elsewhere; point NOETL_PG_DSN at a database of its own")
        self.stack = stack
        self.chain_steps = chain_steps
        self.loop_items = loop_items
        self.waiter = waiter
        self.pids = pids
        self.chain_timeout = 60.0 + chain_steps * 0.5
        self.loop_timeout = 60.0 + loop_items * 0.1
        self._chain: Registered | None = None
        self._loop: Registered | None = None

    async def register(self, *, warmup: bool) -> None:
        """Register both playbooks; with `warmup`, run a small one of each first (caches, connections)."""
        executions = self.stack.executions
        assert executions is not None
        chain = await executions.register(chain_playbook(self.chain_steps), "<bench chain>")
        loop = await executions.register(loop_playbook(self.loop_items), "<bench loop>")
        self._chain, self._loop = Registered(chain.path, chain.version), Registered(loop.path, loop.version)
        if warmup:
            small_chain = await executions.register(chain_playbook(min(self.chain_steps, 20)), "<warm chain>")
            small_loop = await executions.register(loop_playbook(min(self.loop_items, 100)), "<warm loop>")
            await run_once(self.stack, small_chain.path, small_chain.version, self.chain_timeout, self.waiter)
            await run_once(self.stack, small_loop.path, small_loop.version, self.loop_timeout, self.waiter)

    async def chain(self) -> Run:
        assert self._chain is not None, "register() first"
        return await run_once(self.stack, self._chain.path, self._chain.version, self.chain_timeout,
                              self.waiter, self.pids)

    async def loop(self) -> Run:
        assert self._loop is not None, "register() first"
        return await run_once(self.stack, self._loop.path, self._loop.version, self.loop_timeout,
                              self.waiter, self.pids)

    def step_ms(self, run: Run) -> float:
        return run.span_s * 1000.0 / self.chain_steps

    def items_per_s(self, run: Run) -> float:
        return self.loop_items / run.span_s

    def summary(self, chains: list[Run], loops: list[Run]) -> dict[str, Any]:
        """The median per-step time of the chain and the median items/s of the loop, with every sample."""
        per_step_ms = [self.step_ms(run) for run in chains]
        loop_per_s = [self.items_per_s(run) for run in loops]
        return {
            "step_overhead_ms": round(statistics.median(per_step_ms), 4),
            "step_overhead_samples_ms": [round(v, 4) for v in per_step_ms],
            "step_overhead_wall_ms": round(statistics.median(r.wall_s * 1000.0 / self.chain_steps
                                                             for r in chains), 4),
            "chain_events_per_step": round(chains[-1].events / self.chain_steps, 2),
            "loop_throughput_per_s": round(statistics.median(loop_per_s), 1),
            "loop_throughput_samples_per_s": [round(v, 1) for v in loop_per_s],
            "loop_wall_s": round(statistics.median(run.wall_s for run in loops), 4),
            "loop_events_per_item": round(loops[-1].events / self.loop_items, 2),
            # CPU ms by process per step / per item (median run)
            "chain_cpu_per_step_ms": cpu_per_unit(chains, self.chain_steps),
            "loop_cpu_per_item_ms": cpu_per_unit(loops, self.loop_items),
            "measured_from": SPAN_SOURCE,
            "client_wait": "poll executions.ended_at every 10 ms" if self.waiter == "light"
            else "ExecutionService.wait (re-reads new events every 20 ms)",
        }
