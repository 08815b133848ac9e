"""At dispatch time: which of the ready steps to start now, and on which pool, never beyond capacity.

The orchestrator calls `order_ready(ready, running, pools, budget_s=...)` whenever a step becomes ready
or a running one ends. It gets back placements to start now; every other ready task waits for the next
call. The answer never puts more on a pool than its capacity minus what `running` holds there.

- A ready task that no pool can EVER run is never placed: check it first with
  `engine.plan.demands.infeasibility_reason(task.demand, pools)` and fail the step with that message
  (it names the missing capacity), rather than leaving it waiting forever.
- With a tiny budget (< 10 ms), or more ready tasks than a quick lookahead handles, tasks are taken by
  priority (higher first; ties in the order given) and each goes to the best-ranked pool where it fits
  now (first fit). Smaller tasks may go ahead of a larger one that does not fit yet (backfilling).
- With more budget, a list schedule of the ready tasks is built over the time the running tasks still
  hold their units (`remaining_ms`; unknown = the default duration), and the tasks it places at time 0
  start now: a high-priority task that does not fit yet can keep a pool's capacity from being taken by
  tasks that would delay it. With >= 50 ms and contention, CP-SAT improves that schedule (makespan, then
  preference violations) within the budget, left-shifted so nothing waits that could start; only once
  `warm_up()` has loaded it (ortools costs half a second to import: never on a dispatch).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.plan.demands import DEFAULT_DURATION_MS, Demand, fits, ranked_pools
from engine.plan.greedy import greedy, sgs, tails
from engine.plan.pools import Pool, PoolSet
from engine.plan.problem import Problem, TaskSpec, make_problem
from engine.plan.schedule import Schedule, make_schedule, violations

TINY_BUDGET_S = 0.01
SOLVER_BUDGET_S = 0.05
LOOKAHEAD_MAX_TASKS = 400


@dataclass(frozen=True, slots=True)
class ReadyTask:
    key: str  # the dispatcher's own id (a command id)
    demand: Demand
    duration_ms: float = DEFAULT_DURATION_MS  # expected (e.g. the step's median from the event log)
    priority: float = 0.0  # higher first, e.g. the remaining critical path of the step in its Plan


@dataclass(frozen=True, slots=True)
class RunningTask:
    key: str
    pool: str
    units: Mapping[str, float]
    remaining_ms: float = 0.0  # expected time left; 0 = unknown


@dataclass(frozen=True, slots=True)
class Placement:
    key: str
    pool: str


def warm_up() -> None:
    """Import the CP-SAT module now (about half a second, once per process), e.g. when the orchestrator
    starts: `order_ready` uses CP-SAT only once it is loaded, so no dispatch ever waits for the import."""
    from engine.plan import cpsat  # noqa: F401


def step_priorities(problem: Problem) -> dict[str, float]:
    """step -> its remaining critical path in a plan (ms, its own duration included): a good `priority`
    for its ReadyTasks (what lies behind a step is what a delay of it delays)."""
    tail = tails(problem)
    out: dict[str, float] = {}
    for task in problem.tasks:
        out[task.step] = max(out.get(task.step, 0.0), float(tail[task.id]))
    return out


def free_capacity(pools: PoolSet, running: Sequence[RunningTask]) -> dict[str, dict[str, float]]:
    """What each pool has left now: capacity minus the units of what runs there."""
    free = {p.name: {r: float(u) for r, u in p.capacity.items()} for p in pools}
    for task in running:
        if task.pool in free:
            for r, u in task.units.items():
                free[task.pool][r] = free[task.pool].get(r, 0.0) - u
    return free


def _first_fit(ready: Sequence[ReadyTask], pools: PoolSet,
               free: dict[str, dict[str, float]]) -> list[Placement]:
    order = sorted(range(len(ready)), key=lambda i: (-ready[i].priority, i))
    out: list[Placement] = []
    # tasks often share one Demand object (a loop's items): rank its pools once, and once it fits
    # nowhere, skip its other tasks (free capacity only shrinks within this call)
    ranked: dict[int, tuple[dict[str, float], tuple[tuple[Pool, int], ...]]] = {}
    unplaceable: set[int] = set()
    for i in order:
        task = ready[i]
        mark = id(task.demand)
        if mark in unplaceable:
            continue
        if mark not in ranked:
            ranked[mark] = (task.demand.needs(), ranked_pools(task.demand, pools))
        needs, options = ranked[mark]
        for pool, _ in options:
            left = free[pool.name]
            if all(left.get(r, 0.0) + 1e-9 >= u for r, u in needs.items()):
                for r, u in needs.items():
                    left[r] = left.get(r, 0.0) - u
                out.append(Placement(task.key, pool.name))
                break
        else:
            unplaceable.add(mark)
    return out


def _left_shift(problem: Problem, schedule: Schedule) -> Schedule:
    """Every task as early as its pool, precedence and the order of `schedule` allow."""
    starts, _ = sgs(problem, [-float(s) for s in schedule.starts], fixed_pools=schedule.pools)
    return make_schedule(problem, starts, schedule.pools)


def order_ready(ready: Sequence[ReadyTask], running: Sequence[RunningTask], pools: PoolSet, *,
                budget_s: float = 0.02, seed: int = 0) -> list[Placement]:
    """The ready tasks to start now and their pools (highest priority first); see the module docstring."""
    started = time.perf_counter()
    feasible: dict[int, bool] = {}  # per Demand object (a loop's items share one)
    candidates = []
    for task in ready:
        mark = id(task.demand)
        if mark not in feasible:
            feasible[mark] = bool(ranked_pools(task.demand, pools))
        if feasible[mark]:
            candidates.append(task)
    if not candidates:
        return []
    free = free_capacity(pools, running)
    if budget_s < TINY_BUDGET_S or len(candidates) > LOOKAHEAD_MAX_TASKS or len(candidates) == 1:
        return _first_fit(candidates, pools, free)
    specs = [TaskSpec(t.key, t.demand, max(1.0, t.duration_ms)) for t in candidates]
    held = [(r.pool, r.units, r.remaining_ms or DEFAULT_DURATION_MS) for r in running]
    problem = make_problem(specs, (), pools, occupied=held)
    if problem.unsatisfiable:
        return _first_fit(candidates, pools, free)
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].priority, i))
    rank = {i: len(order) - k for k, i in enumerate(order)}
    starts, chosen = sgs(problem, [float(rank[i]) for i in range(len(candidates))])
    schedule = make_schedule(problem, starts, chosen)
    remaining = budget_s - (time.perf_counter() - started)
    contended = schedule.makespan > max(t.duration_ms for t in problem.tasks)
    if remaining >= SOLVER_BUDGET_S and contended and "engine.plan.cpsat" in sys.modules:
        from engine.plan import cpsat  # loaded by warm_up(): never half a second of import here

        hint = greedy(problem, seed=seed)
        hint = hint if hint.key < schedule.key else schedule
        result = cpsat.solve(problem, hint, max_time_s=remaining * 0.8, num_workers=1, seed=seed,
                             deadline=started + budget_s * 0.9)
        if result.schedule is not None and result.schedule.key <= schedule.key:
            schedule = _left_shift(problem, result.schedule)
    placements = [Placement(candidates[i].key, pools.pools[schedule.pools[i]].name)
                  for i in order if schedule.starts[i] == 0]
    # the guarantee does not rest on the solvers: re-check against what is free now
    if violations(problem, schedule) or not _fits_now(placements, candidates, pools, free):
        return _first_fit(candidates, pools, free)
    if not placements and not running:
        return _first_fit(candidates, pools, free)
    return placements


def _fits_now(placements: Sequence[Placement], ready: Sequence[ReadyTask], pools: PoolSet,
              free: Mapping[str, Mapping[str, float]]) -> bool:
    left = {name: dict(units) for name, units in free.items()}
    by_key = {t.key: t for t in ready}
    for placement in placements:
        demand = by_key[placement.key].demand
        pool = pools.get(placement.pool)
        if pool is None or not fits(demand, pool):
            return False
        for r, u in demand.needs().items():
            left[placement.pool][r] = left[placement.pool].get(r, 0.0) - u
            if left[placement.pool][r] < -1e-9:
                return False
    return True
