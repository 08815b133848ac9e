"""`plan(net, pools, ...)`: the whole-execution plan (what `noetl plan` prints).

The greedy list schedule comes first; when it already meets the lower bound it is optimal and returned
as `OPTIMAL`. Otherwise CP-SAT (engine.plan.cpsat, imported only here and only when needed: the first
import of ortools in a process costs about half a second, which is neither counted in `solve_ms` nor
taken from the budget) improves on it within the remaining time. The answer is the better
of the two: `OPTIMAL` (proven), `FEASIBLE` (CP-SAT found a better schedule, not proven optimal) or
`GREEDY` (CP-SAT found nothing better in time). `lower_bound_ms` is the larger of the analytic bound
(engine.plan.lower_bound) and the bound CP-SAT proved.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.net.net import Net
from engine.plan.decompose import split, stitch, subproblem
from engine.plan.greedy import greedy
from engine.plan.lower_bound import lower_bound
from engine.plan.pools import PoolSet
from engine.plan.problem import Problem, UnsatisfiableDemandError, problem_from_net
from engine.plan.schedule import Schedule

PlanStatus = Literal["OPTIMAL", "FEASIBLE", "GREEDY"]
MAX_CPSAT_TASKS = 5000  # beyond this, building the model alone would eat the budget: greedy only
DEFAULT_MAX_SOLVE_S = 2.0
# kept free of CP-SAT: reading the solution back, and CP-SAT's late stop (its sub-solvers check the clock
# between chunks: measured up to 0.25 s late on 1,000 tasks on a loaded 2-core machine)
_MARGIN_S = 0.1
_MARGIN_SHARE = 0.15  # plus this share of the budget


@dataclass(frozen=True)
class Plan:
    problem: Problem
    schedule: Schedule
    greedy: Schedule
    lower_bound_ms: int
    status: PlanStatus
    solve_ms: float

    @property
    def makespan_ms(self) -> int:
        return self.schedule.makespan

    @property
    def gap(self) -> float:
        """(makespan - lower bound) / lower bound; 0 when the bound is met."""
        if self.lower_bound_ms <= 0:
            return 0.0
        return (self.schedule.makespan - self.lower_bound_ms) / self.lower_bound_ms

    def as_json(self) -> dict[str, Any]:
        """NoETL's plan keys plus ours: steps, edges, capacities, schedule, lower_bound_ms, status and
        solve_ms."""
        problem, schedule = self.problem, self.schedule
        names = problem.pools.names
        durations = problem.durations
        return {
            "steps": [{"id": t.id, "step": t.step, "loop_index": t.loop_index,
                       "resources": {r: _number(u) for r, u in t.units.items()},
                       "duration_ms": t.duration_ms, "pool": names[schedule.pools[t.id]]}
                      for t in problem.tasks],
            "edges": [[a, b] for a, b in problem.edges],
            "capacities": problem.capacities_json(),
            "schedule": {
                "starts_ms": list(schedule.starts),
                "ends_ms": [s + d for s, d in zip(schedule.starts, durations, strict=True)],
                "durations_ms": list(durations),
                "makespan_ms": schedule.makespan,
            },
            "lower_bound_ms": self.lower_bound_ms,
            "status": self.status,
            "solve_ms": round(self.solve_ms, 3),
        }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _import_cpsat() -> float:
    """Import the CP-SAT module (ortools) if it is not yet; the seconds that took. The first import in a
    process costs about half a second: it is not counted in `solve_ms` nor taken from the budget."""
    if "engine.plan.cpsat" in sys.modules:
        return 0.0
    started = time.perf_counter()
    from engine.plan import cpsat  # noqa: F401  ortools: only when there is something to solve

    return time.perf_counter() - started


def _least_penalty(problem: Problem) -> int:
    return sum(t.options[0][1] for t in problem.tasks if t.options)


def _proven(problem: Problem, schedule: Schedule, bound: int) -> bool:
    """The bound is met and no pool preference is given up: nothing can be better."""
    return schedule.makespan <= bound and schedule.penalty <= _least_penalty(problem)


def _solve_one(problem: Problem, hint: Schedule, deadline: float, *, num_workers: int, seed: int,
               bound: int | None = None) -> tuple[Schedule, PlanStatus, int]:
    """The better of `hint` and CP-SAT stopped at `deadline`, its status relative to the hint, a bound."""
    bound = lower_bound(problem) if bound is None else bound
    if _proven(problem, hint, bound):
        return hint, "OPTIMAL", bound
    if deadline - time.perf_counter() <= 0.02 or not 0 < problem.size <= MAX_CPSAT_TASKS:
        return hint, "GREEDY", bound
    from engine.plan import cpsat  # imported by _import_cpsat already, outside the budget

    result = cpsat.solve(problem, hint, max_time_s=deadline - time.perf_counter(),
                         num_workers=num_workers, seed=seed, deadline=deadline)
    bound = max(bound, result.bound)
    if result.schedule is None or result.schedule.key > hint.key:
        return hint, "GREEDY", bound
    if result.status == "OPTIMAL":
        return result.schedule, "OPTIMAL", bound
    if result.schedule.key < hint.key:
        return result.schedule, "FEASIBLE", bound
    return hint, "GREEDY", bound


def solve_problem(problem: Problem, *, max_solve_s: float = DEFAULT_MAX_SOLVE_S, num_workers: int = 2,
                  seed: int = 0) -> Plan:
    """Greedy, then CP-SAT within `max_solve_s` (everything included); the better schedule wins.

    A problem with cut tasks (joins every branch meets) is solved part by part (engine.plan.decompose):
    the time left after the greedy passes is shared among the parts the greedy did not already solve
    optimally, in proportion to their size."""
    if problem.unsatisfiable:
        raise UnsatisfiableDemandError(problem.unsatisfiable, problem.pools.source)
    started = time.perf_counter()
    deadline = started + max_solve_s * (1 - _MARGIN_SHARE) - _MARGIN_S  # for CP-SAT
    whole = greedy(problem, seed=seed, deadline=started + max_solve_s / 4)
    parts = split(problem)
    if len(parts) == 1:
        bound = lower_bound(problem)
        if not _proven(problem, whole, bound):
            shift = _import_cpsat()
            started, deadline = started + shift, deadline + shift
        best, status, bound = _solve_one(problem, whole, deadline, num_workers=num_workers, seed=seed,
                                         bound=bound)
    else:
        subs = [subproblem(problem, ids) for ids in parts]
        hints = [greedy(sub, seed=seed, justify_passes=sub.size > 1) for sub in subs]
        bounds = [lower_bound(sub) for sub in subs]
        whole_bound = lower_bound(problem)
        schedules: list[Schedule] = []
        statuses: list[PlanStatus] = []
        pending = sum(sub.size for sub, hint, b in zip(subs, hints, bounds, strict=True)
                      if not _proven(sub, hint, b))
        if pending:
            shift = _import_cpsat()
            started, deadline = started + shift, deadline + shift
        for sub, hint, part_bound in zip(subs, hints, bounds, strict=True):
            share = 0.0
            if not _proven(sub, hint, part_bound):
                share = (deadline - time.perf_counter()) * sub.size / max(1, pending)
                pending -= sub.size
            schedule, part_status, part_bound = _solve_one(
                sub, hint, time.perf_counter() + share, num_workers=num_workers, seed=seed, bound=part_bound)
            schedules.append(schedule)
            statuses.append(part_status)
            bounds[len(schedules) - 1] = part_bound
        stitched = stitch(problem, parts, schedules)
        bound = max(sum(bounds), whole_bound)
        if stitched.key <= whole.key:
            best = stitched
            status = "OPTIMAL" if all(s == "OPTIMAL" for s in statuses) else (
                "FEASIBLE" if stitched.key < whole.key else "GREEDY")
        else:
            best, status = whole, "GREEDY"
    if _proven(problem, best, bound):
        status = "OPTIMAL"
    elapsed = (time.perf_counter() - started) * 1000
    return Plan(problem, best, whole, min(bound, best.makespan), status, elapsed)


def plan(net: Net, pools: PoolSet, *, payload: Mapping[str, Any] | None = None,
         durations: Mapping[str, float] | None = None, max_solve_s: float = DEFAULT_MAX_SOLVE_S,
         num_workers: int = 2, seed: int = 0) -> Plan:
    """The plan of one execution of `net` on `pools` (see engine.plan.problem for how steps become
    tasks). Raises UnsatisfiableDemandError naming the missing capacity when a step can never run."""
    problem = problem_from_net(net, pools, payload=payload, durations=durations)
    return solve_problem(problem, max_solve_s=max_solve_s, num_workers=num_workers, seed=seed)
