"""The planner's lower bound (engine.plan.lower_bound) and the greedy's bottleneck rules and local search.

The bound must be sound: no schedule beats it. It is checked against the brute-force optimum of
`noetl eval planning` on small random instances, against every schedule the planner finds on larger
ones, and shown strictly tighter than the head/tail energy bound where the tasks' windows matter."""

from __future__ import annotations

import random
import time

from engine.plan import Demand, Problem, TaskSpec, make_problem, solve_problem
from engine.plan.greedy import downstream_load, greedy
from engine.plan.lower_bound import critical_path, destructive_bound, energy_bound, lower_bound, slot_bound
from engine.plan.pools import parse_pools
from engine.plan.schedule import violations
from evals.benchmarks.plan import make_instance
from evals.suites.planning import brute_force, random_instance


def _head_tail_bound(problem: Problem) -> int:
    return max(critical_path(problem), energy_bound(problem), slot_bound(problem))


def _window_instance() -> Problem:
    """Two 10 ms tasks of 1 cpu, and one of the whole 2 cpus for 4 ms, 3 ms after the start and 3 ms
    before the end: it cannot run beside either of the others, so 17 ms is the optimum."""
    pools = parse_pools("pools: [{name: p, capacity: {cpu: 2}}]")
    specs = [TaskSpec("x1", Demand("x1", {"cpu": 1}), 10), TaskSpec("x2", Demand("x2", {"cpu": 1}), 10),
             TaskSpec("before", Demand("before"), 3), TaskSpec("wide", Demand("wide", {"cpu": 2}), 4),
             TaskSpec("after", Demand("after"), 3)]
    return make_problem(specs, [(2, 3), (3, 4)], pools)


def test_the_bound_never_exceeds_the_brute_force_optimum_on_small_random_instances() -> None:
    rng = random.Random(2024)
    tighter = 0
    for _ in range(150):
        problem = random_instance(rng)
        optimum, _ = brute_force(problem)
        bound = lower_bound(problem)
        assert bound <= optimum, problem
        tighter += bound > _head_tail_bound(problem)
    assert tighter >= 15  # the destructive bound is doing work, not only repeating the others


def test_windows_make_the_bound_strictly_tighter_than_the_head_tail_energy_bound() -> None:
    problem = _window_instance()
    assert _head_tail_bound(problem) == 14  # (10 + 10 + 2 x 4) / 2: all the work in one window
    assert lower_bound(problem) == 17 == brute_force(problem)[0]


def test_the_destructive_bound_starts_from_the_known_bound_and_never_lowers_it() -> None:
    problem = _window_instance()
    assert destructive_bound(problem, 16) == 17
    assert destructive_bound(problem, 17) == 17
    assert destructive_bound(problem, 20) == 20  # not refuted: returned as given


def test_a_task_that_may_use_either_pool_counts_only_against_both_pools_together() -> None:
    pools = parse_pools("pools: [{name: a, capacity: {cpu: 1}}, {name: b, capacity: {cpu: 1}}]")
    specs = [TaskSpec(f"t{i}", Demand(f"t{i}", {"cpu": 1}), 10) for i in range(2)]
    problem = make_problem(specs, (), pools)
    assert lower_bound(problem) == 10 == brute_force(problem)[0]  # one on each pool at once


def test_the_bound_is_below_every_schedule_on_a_deep_dag_and_fast() -> None:
    for seed in (0, 3):
        problem = make_instance(seed, steps=300)
        started = time.perf_counter()
        bound = lower_bound(problem)
        assert time.perf_counter() - started < 2.0
        assert bound >= _head_tail_bound(problem)
        result = solve_problem(problem, max_solve_s=0.6)
        assert violations(problem, result.schedule) == []
        assert bound <= result.lower_bound_ms <= result.makespan_ms


def test_downstream_load_is_the_bottleneck_work_a_task_unlocks() -> None:
    pools = parse_pools("pools: [{name: g, capacity: {gpu: 2, cpu: 8}}]")
    specs = [TaskSpec("prep", Demand("prep", {"cpu": 1}), 1), TaskSpec("a", Demand("a", {"gpu": 1}), 10),
             TaskSpec("b", Demand("b", {"gpu": 2}), 10), TaskSpec("c", Demand("c", {"gpu": 1}), 10)]
    problem = make_problem(specs, [(0, 1), (0, 2), (1, 3)], pools)
    load = downstream_load(problem)
    assert load == [(10 + 20 + 10) / 2, 10 / 2, 0.0, 0.0]
    idle = make_problem([TaskSpec("x", Demand("x", {"cpu": 1}), 5)], (), pools)
    assert downstream_load(idle) is None  # no busy resource: no extra rules


def test_greedy_searches_around_its_best_schedule_only_when_given_time() -> None:
    problem = make_instance(3, steps=200)
    quick = greedy(problem, seed=3)
    assert greedy(problem, seed=3).key == quick.key  # without time: deterministic
    searched = greedy(problem, seed=3, budget_s=0.3)
    assert violations(problem, searched) == []
    assert searched.key <= quick.key
    assert lower_bound(problem) <= searched.makespan
