"""The planner against the exact optimum: random small instances (<= 8 tasks, 2 pools) solved by brute force.

Brute force enumerates every serial schedule: every order that respects precedence, every pool for every
task, each task placed at its earliest start where its pool has the capacity. Those are all the active
schedules, and for makespan (then preference penalties) an optimal schedule is among them, so the
smallest (makespan, penalty) found is the optimum. Branches that cannot beat the best so far are cut
(the makespan so far, and each unplaced task's earliest start plus its critical path). The placement
code here is written apart from the planner's, on purpose.

Checked per instance: the planner's schedule is valid, its (makespan, penalty) is the optimum, it is
never worse than the greedy one, and the lower bound is at most the optimum.

Run: `noetl eval planning [--instances 200] [--seed 0] [--json]` or `python -m evals.suites.planning`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.plan.demands import Demand
from engine.plan.lower_bound import lower_bound
from engine.plan.planner import solve_problem
from engine.plan.pools import Pool, PoolSet
from engine.plan.problem import Problem, TaskSpec, make_problem
from engine.plan.schedule import violations

MAX_TASKS = 8
LABELS = ("gpu", "h100", "highmem", "ssd")


def random_instance(rng: random.Random, max_tasks: int = MAX_TASKS) -> Problem:
    """2 pools with 1-2 resources and labels; 2..max_tasks tasks with random demands, labels, edges."""
    resources = ["cpu"] + (["mem"] if rng.random() < 0.6 else [])
    pools = []
    for name in ("a", "b"):
        capacity = {r: rng.randint(1, 4) for r in resources}
        labels = frozenset(rng.sample(LABELS, rng.randint(0, 2)))
        pools.append(Pool(name, labels, capacity))
    pool_set = PoolSet(tuple(pools), {}, "eval")
    specs: list[TaskSpec] = []
    n = rng.randint(min(4, max_tasks), max_tasks)
    while len(specs) < n:
        units = {r: rng.randint(0, 3) for r in resources}
        prefer = tuple(rng.sample(LABELS, rng.randint(0, 2)))
        require = frozenset(rng.sample(LABELS, 1)) if rng.random() < 0.2 else frozenset()
        pool = rng.choice(["a", "b"]) if rng.random() < 0.1 else None
        demand = Demand(f"t{len(specs)}", {r: float(u) for r, u in units.items() if u}, pool=pool,
                        prefer=prefer, require=require)
        spec = TaskSpec(f"t{len(specs)}", demand, float(rng.randint(0, 10) if rng.random() < 0.1
                                                         else rng.randint(1, 10)))
        trial = make_problem([spec], (), pool_set)
        if not trial.unsatisfiable:  # keep only tasks some pool can run
            specs.append(spec)
    edges = [(a, b) for b in range(n) for a in range(b) if rng.random() < 0.25]
    return make_problem(specs, edges, pool_set)


def _tails(problem: Problem) -> list[int]:
    tail = [0] * problem.size
    for i in reversed(problem.topological_order()):
        tail[i] = problem.tasks[i].duration_ms + max((tail[s] for s in problem.succs[i]), default=0)
    return tail


def brute_force(problem: Problem) -> tuple[int, int]:
    """The optimal (makespan, penalty) by enumeration of all serial schedules (see the module docstring)."""
    n = problem.size
    durations = [t.duration_ms for t in problem.tasks]
    tail = _tails(problem)
    best = [10**18, 10**18]
    placed: list[tuple[int, int, int, int]] = []  # (task, pool, start, end)
    end_of: dict[int, int] = {}

    def fits(pool: int, task: int, start: int) -> bool:
        end = start + durations[task]
        if end == start:
            return True
        points = {start} | {s for _, p, s, e in placed if p == pool and start < s < end}
        for t in points:
            for r, cap in enumerate(problem.capacity[pool]):
                used = problem.demand[task][r] + sum(problem.demand[k][r] for k, p, s, e in placed
                                                     if p == pool and s <= t < e and e > s)
                if used > cap:
                    return False
        return True

    def earliest(pool: int, task: int, est: int) -> int:
        candidates = sorted({est} | {e for _, p, _, e in placed if p == pool and e > est})
        for t in candidates:
            if fits(pool, task, t):
                return t
        raise AssertionError("a feasible pool always fits once everything has ended")

    def bound(makespan: int) -> int:
        est: dict[int, int] = {}
        out = makespan
        for i in problem.topological_order():
            if i in end_of:
                continue
            est[i] = max((end_of[p] if p in end_of else est[p] + durations[p] for p in problem.preds[i]),
                         default=0)
            out = max(out, est[i] + tail[i])
        return out

    def search(makespan: int, penalty: int) -> None:
        if len(placed) == n:
            if (makespan, penalty) < (best[0], best[1]):
                best[0], best[1] = makespan, penalty
            return
        if (bound(makespan), penalty) >= (best[0], best[1]):
            return
        for i in range(n):
            if i in end_of or any(p not in end_of for p in problem.preds[i]):
                continue
            est = max((end_of[p] for p in problem.preds[i]), default=0)
            for pool, pen in problem.tasks[i].options:
                start = earliest(pool, i, est)
                placed.append((i, pool, start, start + durations[i]))
                end_of[i] = start + durations[i]
                search(max(makespan, end_of[i]), penalty + pen)
                placed.pop()
                del end_of[i]

    search(0, 0)
    return best[0], best[1]


@dataclass
class Report:
    instances: int = 0
    optimal: int = 0  # the planner's (makespan, penalty) equals the brute-force optimum
    worse_than_greedy: int = 0
    invalid_schedules: int = 0
    bound_above_optimum: int = 0
    status: dict[str, int] = field(default_factory=dict)
    greedy_optimal: int = 0
    greedy_gap_mean: float = 0.0  # (greedy makespan - optimum) / optimum
    greedy_gap_max: float = 0.0
    bound_gap_mean: float = 0.0  # (optimum - analytic lower bound) / optimum (without CP-SAT's bound)
    solve_ms_median: float = 0.0
    brute_force_ms_median: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.optimal == self.instances and not self.worse_than_greedy and not self.invalid_schedules
                and not self.bound_above_optimum)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def run(instances: int = 200, seed: int = 0, *, max_solve_s: float = 1.0) -> Report:
    rng = random.Random(seed)
    report = Report()
    greedy_gaps: list[float] = []
    bound_gaps: list[float] = []
    solve_ms: list[float] = []
    brute_ms: list[float] = []
    for k in range(instances):
        problem = random_instance(rng)
        started = time.perf_counter()
        optimum = brute_force(problem)
        brute_ms.append((time.perf_counter() - started) * 1000)
        plan = solve_problem(problem, max_solve_s=max_solve_s, seed=seed)
        solve_ms.append(plan.solve_ms)
        report.instances += 1
        report.status[plan.status] = report.status.get(plan.status, 0) + 1
        got = plan.schedule.key
        problems = violations(problem, plan.schedule)
        if problems:
            report.invalid_schedules += 1
        if got == optimum:
            report.optimal += 1
        if got > plan.greedy.key:
            report.worse_than_greedy += 1
        analytic = lower_bound(problem)
        if plan.lower_bound_ms > optimum[0] or analytic > optimum[0]:
            report.bound_above_optimum += 1
        if plan.greedy.key == optimum:
            report.greedy_optimal += 1
        if optimum[0] > 0:
            greedy_gaps.append((plan.greedy.makespan - optimum[0]) / optimum[0])
            bound_gaps.append((optimum[0] - analytic) / optimum[0])
        bad_bound = max(plan.lower_bound_ms, analytic) > optimum[0]
        if problems or got != optimum or got > plan.greedy.key or bad_bound:
            report.failures.append({"instance": k, "tasks": problem.size, "optimum": list(optimum),
                                    "planned": list(got), "greedy": list(plan.greedy.key),
                                    "lower_bound_ms": plan.lower_bound_ms, "analytic_bound_ms": analytic,
                                    "status": plan.status,
                                    "violations": problems[:3]})
    if greedy_gaps:
        report.greedy_gap_mean = round(statistics.fmean(greedy_gaps), 4)
        report.greedy_gap_max = round(max(greedy_gaps), 4)
        report.bound_gap_mean = round(statistics.fmean(bound_gaps), 4)
    report.solve_ms_median = round(statistics.median(solve_ms), 2) if solve_ms else 0.0
    report.brute_force_ms_median = round(statistics.median(brute_ms), 2) if brute_ms else 0.0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = run(args.instances, args.seed)
    print(json.dumps(report.as_json(), indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
