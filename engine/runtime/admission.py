"""Dispatch under capacity: live pools from worker heartbeats; a command goes out only where it fits.

The orchestrator offers every RunStep it decides to send; `admit` returns those that fit now (and on
which pool), the ones no pool could EVER run (to fail them with the missing capacity named), and leaves
the rest waiting. A command that cannot go out at once is recorded as `step.deferred` (with the
reason) and, when it goes later, as `step.dispatched` (with its pool); so is one routed to another pool
than the step names. A restarted orchestrator therefore knows which pending commands are still waiting
and which went out (those hold their units until their outcome).

Capacity: a pool's live capacity is the sum of what its live workers declare in their heartbeats
(`--capacity`, else the pools file's capacity for the pool, else `cpu: concurrency`). A pool without a
live worker has none: its steps wait, named in the reason, until a worker comes. "Could ever run" is
judged against the pools file's pools and every pool a live worker serves; without a pools file, a
step naming a pool nobody serves yet waits for a worker of that pool instead of failing.

Slot-bound pools: when every live worker of a pool declares the default capacity (`cpu: concurrency`,
nothing else), a step that holds at most one cpu and names no labels (a python or shell step by its
kind's default) goes to the pool's queue at once, like a step that holds nothing: the workers' own
concurrency bounds it exactly as admission would, and a worker takes the next one as soon as a slot
frees, without a round trip through the orchestrator per item. Its units are still counted, so a step
that holds more waits until they are free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.net.net import Net
from engine.plan.demands import Demand, fmt_units, infeasibility_reason, ranked_pools, step_duration_ms
from engine.plan.dispatch import ReadyTask, RunningTask, order_ready
from engine.plan.pools import Pool, PoolSet
from engine.protocol.commands import RunStep
from engine.protocol.workers import DEAD_AFTER_S, WorkerHeartbeat

log = logging.getLogger(__name__)

DISPATCH_BUDGET_S = 0.005  # per admission round: first fit by priority (the lookahead needs more)
BATCH_MAX = 64  # commands of one pool in one bus message at most


def step_priorities(net: Net) -> dict[str, float]:
    """Each step's remaining critical path (ms, per-kind default durations, back edges of cycles
    dropped): what a delay of the step delays. When more commands are ready than capacity allows, the
    ones with the most behind them go first (the greedy order of `noetl plan`)."""
    successors: dict[str, list[str]] = {name: [] for name in net.transitions}
    for name, transition in net.transitions.items():
        for source in transition.forward_predecessors:
            if source in successors:
                successors[source].append(name)
    memo: dict[str, float] = {}

    def tail(name: str, depth: int = 0) -> float:
        if name in memo:
            return memo[name]
        if depth > len(successors):  # a cycle the back-edge pruning missed: no further
            return 0.0
        own = step_duration_ms(net.playbook.step(name), net.playbook)
        memo[name] = own + max((tail(s, depth + 1) for s in successors[name]), default=0.0)
        return memo[name]

    return {name: tail(name) for name in successors}


@dataclass
class _Seen:
    beat: WorkerHeartbeat
    at: float


class LiveCapacity:
    """The workers heard from recently, as pools: capacity summed per pool, labels united."""

    def __init__(self, declared: PoolSet | None = None, *, clock: Callable[[], float] = time.monotonic,
                 dead_after_s: float = DEAD_AFTER_S) -> None:
        self.declared = declared
        self._clock = clock
        self._dead_after_s = dead_after_s
        self._workers: dict[str, _Seen] = {}
        self.changed = False  # set by a heartbeat that changes what is live; cleared by the reader
        self._version = 0  # counts the changes of what is live: `live` and `known` are kept per version
        self._live: tuple[int, PoolSet | None] | None = None
        self._known: tuple[int, PoolSet] | None = None

    def _changed(self) -> None:
        self.changed = True
        self._version += 1

    def heartbeat(self, beat: WorkerHeartbeat) -> None:
        if beat.stopping:
            if self._workers.pop(beat.worker, None) is not None:
                self._changed()
                log.info("worker %s of pool %s stopped", beat.worker, beat.pool)
            return
        known = self._workers.get(beat.worker)
        if known is None or known.beat != beat:
            self._changed()
            if known is None:
                log.info("worker %s joined pool %s with %s", beat.worker, beat.pool, beat.capacity)
        self._workers[beat.worker] = _Seen(beat, self._clock())

    def _expire(self) -> None:
        now = self._clock()
        for worker, seen in list(self._workers.items()):
            if now - seen.at > self._dead_after_s:
                del self._workers[worker]
                self._changed()
                log.warning("worker %s of pool %s is gone (no heartbeat for %.0f s); its capacity is "
                            "no longer counted", worker, seen.beat.pool, now - seen.at)

    def live(self) -> PoolSet | None:
        """The pools with at least one live worker (None when there is none)."""
        self._expire()
        if self._live is not None and self._live[0] == self._version:
            return self._live[1]
        capacity: dict[str, dict[str, float]] = {}
        labels: dict[str, set[str]] = {}
        for seen in self._workers.values():
            beat = seen.beat
            units = capacity.setdefault(beat.pool, {})
            for resource, amount in beat.capacity.items():
                units[resource] = units.get(resource, 0.0) + amount
            labels.setdefault(beat.pool, set()).update(beat.labels)
        if not capacity:
            self._live = (self._version, None)
            return None
        pools = []
        for name, units in capacity.items():
            declared = self.declared.get(name) if self.declared is not None else None
            tags = labels[name] | (set(declared.labels) if declared is not None else set())
            pools.append(Pool(name, frozenset(tags), {r: int(u) for r, u in units.items()}))
        found = PoolSet(tuple(pools))
        self._live = (self._version, found)
        return found

    def batch_limit(self, pool: str) -> int:
        """How many commands of `pool` may share one bus message: a quarter of the smallest live
        worker's concurrency (at most BATCH_MAX), so that one worker taking a batch cannot starve the
        others of the pool; 1 (no batching) for pools of small workers or none heard from."""
        sizes = [seen.beat.concurrency for seen in self._workers.values()
                 if seen.beat.pool == pool and not seen.beat.stopping]
        return max(1, min(BATCH_MAX, min(sizes) // 4)) if sizes else 1

    def slot_bound(self, pool: str) -> bool:
        """Whether every live worker of `pool` declares one cpu per slot and nothing else (the default
        capacity, `cpu: concurrency`): there a step holding at most one cpu is bounded by the workers' own
        concurrency as tightly as by admission, so it may wait in the pool's JetStream queue instead."""
        beats = [seen.beat for seen in self._workers.values() if seen.beat.pool == pool]
        return bool(beats) and all(
            set(beat.capacity) == {"cpu"} and beat.capacity["cpu"] == beat.concurrency for beat in beats)

    def known(self, live: PoolSet | None = None) -> PoolSet:
        """What could ever run a step: the declared pools (at least their declared capacity) and every
        live pool (`live`: what `live()` just returned, to not compute it twice)."""
        if live is None:
            live = self.live()
        if self._known is not None and self._known[0] == self._version:
            return self._known[1]
        by_name = {p.name: p for p in (live or ())}
        merged: list[Pool] = []
        for pool in self.declared or PoolSet.default():
            seen = by_name.pop(pool.name, None)
            if seen is None:
                merged.append(pool)
                continue
            units = dict(pool.capacity)
            for resource, amount in seen.capacity.items():
                units[resource] = max(units.get(resource, 0), amount)
            merged.append(Pool(pool.name, pool.labels | seen.labels, units))
        merged.extend(by_name.values())
        kinds = self.declared.kind_defaults if self.declared is not None else {}
        found = PoolSet(tuple(merged), kind_defaults=kinds)
        self._known = (self._version, found)
        return found


@dataclass
class _Waiting:
    command: RunStep
    demand: Demand
    priority: float
    recorded: bool = False  # a step.deferred event was written for it
    reason: str = ""


@dataclass
class Decisions:
    """One admission round: what goes out now, what can never go, what newly waits (and why)."""

    admitted: list[tuple[RunStep, bool]] = field(default_factory=list)  # (command on its pool, record?)
    impossible: list[tuple[RunStep, str]] = field(default_factory=list)
    deferred: list[tuple[RunStep, str]] = field(default_factory=list)


class Admission:
    """Commands waiting for capacity and the units of those that went out."""

    def __init__(self, capacity: LiveCapacity) -> None:
        self.capacity = capacity
        self._waiting: dict[str, _Waiting] = {}
        self._running: dict[str, RunningTask] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def offer(self, command: RunStep, demand: Demand, *, priority: float = 0.0,
              recorded: bool = False) -> None:
        """A command to send once it fits (`recorded`: its step.deferred is already in the log)."""
        if command.command_id not in self._running:
            self._waiting[command.command_id] = _Waiting(command, demand, priority, recorded)

    def sent(self, command: RunStep, demand: Demand) -> None:
        """A command that already went out (found pending when the log was replayed)."""
        self._waiting.pop(command.command_id, None)
        self._running[command.command_id] = RunningTask(command.command_id, command.pool, demand.needs())

    def withdraw(self, command_id: str) -> RunStep | None:
        """Take back a command that has not gone out (it was cancelled); None when it had."""
        waiting = self._waiting.pop(command_id, None)
        return waiting.command if waiting is not None else None

    def settle(self, command_ids: Iterable[str]) -> None:
        """Outcomes arrived: the units these commands held are free again."""
        for command_id in command_ids:
            self._running.pop(command_id, None)
            self._waiting.pop(command_id, None)

    def admit(self) -> Decisions:
        decisions = Decisions()
        if not self._waiting:
            return decisions
        live = self.capacity.live()
        known = self.capacity.known(live)
        ready: list[ReadyTask] = []
        # a loop's items share one Demand object (per step, per execution): judge each demand once
        judged: dict[tuple[int, str], tuple[str | None, bool, bool]] = {}
        slot_bound: dict[str, bool] = {}  # pool -> LiveCapacity.slot_bound, once per round
        for key, waiting in list(self._waiting.items()):
            demand = waiting.demand
            verdict_key = (id(demand), waiting.command.pool)
            verdict = judged.get(verdict_key)
            if verdict is None:
                verdict = judged[verdict_key] = self._judge(demand, waiting.command.pool, known, slot_bound)
            reason, holds_nothing, queued = verdict
            if reason is not None:
                del self._waiting[key]
                decisions.impossible.append((waiting.command, reason))
            elif holds_nothing:
                del self._waiting[key]  # holds nothing: to its pool at once (JetStream queues it)
                decisions.admitted.append((waiting.command, waiting.recorded))
            elif queued:  # a slot's worth on a pool whose workers bound it: they take it as a slot frees
                del self._waiting[key]
                self._running[key] = RunningTask(key, waiting.command.pool, demand.needs())
                decisions.admitted.append((waiting.command, waiting.recorded))
            else:
                ready.append(ReadyTask(key, waiting.demand, priority=waiting.priority))
        if ready and live is not None:
            running = [r for r in self._running.values() if live.get(r.pool) is not None]
            for placement in order_ready(ready, running, live, budget_s=DISPATCH_BUDGET_S):
                waiting = self._waiting.pop(placement.key)
                command = waiting.command
                moved = placement.pool != command.pool
                if moved:
                    command = command.model_copy(update={"pool": placement.pool})
                self._running[command.command_id] = RunningTask(command.command_id, placement.pool,
                                                                waiting.demand.needs())
                decisions.admitted.append((command, waiting.recorded or moved))
        reasons: dict[int, str] = {}  # nothing changes in this loop: one reason per demand
        for waiting in self._waiting.values():
            if not waiting.recorded:
                waiting.recorded = True
                mark = id(waiting.demand)
                if mark not in reasons:
                    reasons[mark] = self._why_waiting(waiting.demand, live)
                waiting.reason = reasons[mark]
                decisions.deferred.append((waiting.command, waiting.reason))
        return decisions

    def _judge(self, demand: Demand, pool: str, known: PoolSet,
               slot_bound: dict[str, bool]) -> tuple[str | None, bool, bool]:
        """(why it can never run or None, whether it holds nothing, whether it may wait in its pool's
        queue: at most one cpu and nothing else, no labels to choose a pool by, on a slot-bound pool)."""
        reason = infeasibility_reason(demand, known)
        if (reason is not None and self.capacity.declared is None and demand.pool is not None
                and known.get(demand.pool) is None):
            reason = None  # no pools file: a worker of that pool may still come, so it waits
        needs = demand.needs()
        labelled = bool(demand.require or demand.prefer)
        holds_nothing = not needs and not labelled
        queued = False
        if reason is None and not labelled and set(needs) == {"cpu"} and needs["cpu"] <= 1:
            if pool not in slot_bound:
                slot_bound[pool] = self.capacity.slot_bound(pool)
            queued = slot_bound[pool]
        return reason, holds_nothing, queued

    def _why_waiting(self, demand: Demand, live: PoolSet | None) -> str:
        if live is None:
            return "no worker is live yet: waiting for one to report its capacity"
        candidates = [pool for pool, _ in ranked_pools(demand, live)]
        if not candidates:
            names = ", ".join(sorted(p.name for p in live)) or "none"
            return (f"no live worker serves a pool that can run it (needs {demand.describe()}"
                    + (f", pool {demand.pool}" if demand.pool else "")
                    + (f", labels {sorted(demand.require)}" if demand.require else "")
                    + f"; live pools: {names})")
        used: dict[str, dict[str, float]] = {}
        for task in self._running.values():
            units = used.setdefault(task.pool, {})
            for resource, amount in task.units.items():
                units[resource] = units.get(resource, 0.0) + amount
        parts = []
        for pool in candidates[:3]:
            held = used.get(pool.name, {})
            busy = [f"{r} {fmt_units(held.get(r, 0.0))} of {fmt_units(pool.units(r))} in use"
                    for r in demand.needs()]
            parts.append(f"pool {pool.name}: " + ", ".join(busy))
        return f"waiting for capacity (needs {demand.describe()}; " + "; ".join(parts) + ")"
