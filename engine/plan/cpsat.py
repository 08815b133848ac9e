"""The exact scheduler: the problem as a CP-SAT model. The ONLY module that imports ortools.

Model: one start variable per task (0 .. horizon - duration, the horizon being the greedy makespan, so
every solution is at least as short as the greedy one); a task with one possible pool has a fixed-size
interval, one with several has an optional interval per pool with `exactly one` present; one cumulative
constraint per (pool, resource) that some task demands; `start[b] >= start[a] + duration[a]` per edge;
`makespan >= end` of every task without successors; `start[a] <= start[b]` within each group of
interchangeable tasks (symmetry breaking).

Objective (lexicographic by weighting): `makespan x W + sum of preference penalties of the chosen pools`
with W = 1 + the largest possible penalty sum, so one ms of makespan always outweighs every preference.

The greedy schedule is given as a complete hint. The solve is bounded by `max_time_s`, runs
`num_workers` (<= 2 by default: CI machines have 2 cores) with a fixed `random_seed`; under a wall-clock
limit the result may still differ between runs when the limit is hit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from ortools.sat.python import cp_model

from engine.plan.problem import Problem
from engine.plan.schedule import Schedule, make_schedule

Status = Literal["OPTIMAL", "FEASIBLE", "UNKNOWN", "INFEASIBLE"]


@dataclass(frozen=True, slots=True)
class CpResult:
    status: Status
    schedule: Schedule | None
    bound: int  # a proven lower bound on the makespan (0 when nothing was proven)
    build_s: float
    solve_s: float


def interchangeable(problem: Problem) -> list[list[int]]:
    """Groups of tasks that any schedule may swap (the items of one loop, most often): same duration,
    demand, pool options, predecessors and successors. Ordering their starts removes symmetric copies
    of every schedule, which otherwise leave CP-SAT unable to prove even a 10-task optimum."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for task in problem.tasks:
        i = task.id
        key = (task.duration_ms, problem.demand[i], task.options, frozenset(problem.preds[i]),
               frozenset(problem.succs[i]))
        groups.setdefault(key, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def solve(problem: Problem, hint: Schedule, *, max_time_s: float, num_workers: int = 2,
          seed: int = 0, deadline: float | None = None) -> CpResult:
    """Solve within `max_time_s` (and before `deadline`, a time.perf_counter() value, when given)."""
    started = time.perf_counter()
    n = problem.size
    durations = problem.durations
    horizon = max(hint.makespan, max((u for _, u, _ in problem.occupied), default=0), 1)
    model = cp_model.CpModel()
    starts = [model.new_int_var(0, max(0, horizon - durations[i]), f"s{i}") for i in range(n)]
    presence: list[list[tuple[int, int, cp_model.IntVar | None]]] = []
    per_pool: list[list[tuple[cp_model.IntervalVar, int]]] = [[] for _ in problem.pools]
    max_penalty = 0
    penalty_terms = []
    for i, task in enumerate(problem.tasks):
        d = durations[i]
        options = task.options
        max_penalty += max((pen for _, pen in options), default=0)
        if len(options) == 1:
            p, pen = options[0]
            interval = model.new_fixed_size_interval_var(starts[i], d, f"i{i}")
            per_pool[p].append((interval, i))
            presence.append([(p, pen, None)])
            continue
        lits = []
        row: list[tuple[int, int, cp_model.IntVar | None]] = []
        for p, pen in options:
            lit = model.new_bool_var(f"x{i}_{p}")
            interval = model.new_optional_fixed_size_interval_var(starts[i], d, lit, f"i{i}_{p}")
            per_pool[p].append((interval, i))
            lits.append(lit)
            row.append((p, pen, lit))
            if pen:
                penalty_terms.append(pen * lit)
        model.add_exactly_one(lits)
        presence.append(row)
    held: list[list[tuple[cp_model.IntervalVar, tuple[int, ...]]]] = [[] for _ in problem.pools]
    for k, (p, until, units) in enumerate(problem.occupied):
        held[p].append((model.new_fixed_size_interval_var(0, until, f"held{k}"), units))
    for p in range(len(problem.pools)):
        for r in range(len(problem.resources)):
            items = [(iv, problem.demand[i][r]) for iv, i in per_pool[p] if problem.demand[i][r] > 0
                     and durations[i] > 0]
            items += [(iv, units[r]) for iv, units in held[p] if units[r] > 0]
            if not items:
                continue
            total = sum(q for _, q in items)
            if total <= problem.capacity[p][r]:
                continue  # never binding
            model.add_cumulative([iv for iv, _ in items], [q for _, q in items], problem.capacity[p][r])
    for a, b in problem.edges:
        model.add(starts[b] >= starts[a] + durations[a])
    hint_starts, hint_pools = list(hint.starts), list(hint.pools)
    for group in interchangeable(problem):
        for a, b in zip(group, group[1:], strict=False):
            model.add(starts[a] <= starts[b])
        # the same schedule with the group's places handed out in that order: the hint stays valid
        places = sorted((hint.starts[i], hint.pools[i]) for i in group)
        for i, (start, pool) in zip(group, places, strict=True):
            hint_starts[i], hint_pools[i] = start, pool
    makespan = model.new_int_var(0, horizon, "makespan")
    for i in range(n):
        if not problem.succs[i]:
            model.add(makespan >= starts[i] + durations[i])
    weight = max_penalty + 1
    if penalty_terms:
        model.minimize(makespan * weight + sum(penalty_terms))
    else:
        model.minimize(makespan)
    for i in range(n):
        model.add_hint(starts[i], hint_starts[i])
        for p, _, chosen_lit in presence[i]:
            if chosen_lit is not None:
                model.add_hint(chosen_lit, 1 if hint_pools[i] == p else 0)
    model.add_hint(makespan, hint.makespan)

    solver = cp_model.CpSolver()
    build_s = time.perf_counter() - started
    limit = max_time_s - build_s
    if deadline is not None:
        limit = min(limit, deadline - time.perf_counter())
    if limit <= 0.005:
        return CpResult("UNKNOWN", None, 0, build_s, 0.0)
    solver.parameters.max_time_in_seconds = limit
    solver.parameters.num_workers = max(1, num_workers)
    solver.parameters.random_seed = seed
    # the transitive closure of the precedences runs uninterruptibly before the search: on 1,000 tasks
    # it alone overran a 1.5 s limit by up to a second (measured), for no better schedules
    solver.parameters.transitive_precedences_work_limit = 0
    solve_started = time.perf_counter()
    code = solver.solve(model)
    solve_s = time.perf_counter() - solve_started
    names: dict[cp_model.CpSolverStatus, Status] = {
        cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE"}
    status = names.get(code, "UNKNOWN")
    bound = 0
    if status in ("OPTIMAL", "FEASIBLE"):
        raw_bound = solver.best_objective_bound
        bound = int(raw_bound // weight) if penalty_terms else int(raw_bound)
        if status == "OPTIMAL":
            bound = int(solver.value(makespan))
    if status not in ("OPTIMAL", "FEASIBLE"):
        return CpResult(status, None, bound, build_s, solve_s)
    chosen = []
    for i in range(n):
        pool = presence[i][0][0]
        for p, _, chosen_lit in presence[i]:
            if chosen_lit is not None and solver.boolean_value(chosen_lit):
                pool = p
        chosen.append(pool)
    schedule = make_schedule(problem, [int(solver.value(s)) for s in starts], chosen)
    return CpResult(status, schedule, bound, build_s, solve_s)
