"""The schedulers: greedy, CP-SAT, the lower bound, the planner and dispatch-time ordering.

Every schedule is checked by `violations` (capacity never exceeded at any time on any pool, precedence,
pools the task may use) and against the lower bound; solve limits stay <= 1 s."""

from __future__ import annotations

import random

import pytest

from engine.net.validate import validate_text
from engine.plan import (
    Demand,
    Placement,
    PoolSet,
    ReadyTask,
    RunningTask,
    TaskSpec,
    UnsatisfiableDemandError,
    cpsat,
    make_problem,
    order_ready,
    plan,
    solve_problem,
)
from engine.plan.greedy import greedy
from engine.plan.lower_bound import critical_path, lower_bound
from engine.plan.pools import Pool, parse_pools
from engine.plan.schedule import make_schedule, violations
from evals.benchmarks.plan import make_instance, make_playbook_instance
from evals.suites.planning import random_instance

TWO_GPU_POOLS = PoolSet((Pool("h100", frozenset({"gpu", "h100"}), {"gpu": 1, "cpu": 4}),
                         Pool("a100", frozenset({"gpu", "a100"}), {"gpu": 1, "cpu": 4}),
                         Pool("cpu", frozenset(), {"cpu": 2})), {}, "test")


def test_greedy_schedules_are_valid_and_never_beat_the_lower_bound() -> None:
    rng = random.Random(7)
    for _ in range(60):
        problem = random_instance(rng)
        schedule = greedy(problem)
        assert violations(problem, schedule) == []
        assert schedule.makespan >= lower_bound(problem) >= critical_path(problem)


def test_cpsat_is_valid_and_never_worse_than_its_hint() -> None:
    rng = random.Random(11)
    for _ in range(15):
        problem = random_instance(rng)
        hint = greedy(problem)
        result = cpsat.solve(problem, hint, max_time_s=0.5, num_workers=2)
        assert result.schedule is not None and result.status in ("OPTIMAL", "FEASIBLE")
        assert violations(problem, result.schedule) == []
        assert result.schedule.key <= hint.key
        assert result.bound <= result.schedule.makespan


def test_a_larger_instance_is_planned_within_its_budget() -> None:
    problem = make_instance(3, steps=150)
    result = solve_problem(problem, max_solve_s=0.8)
    assert violations(problem, result.schedule) == []
    assert result.schedule.key <= result.greedy.key
    assert lower_bound(problem) <= result.lower_bound_ms <= result.makespan_ms
    assert result.solve_ms < 1500
    assert result.status in ("OPTIMAL", "FEASIBLE", "GREEDY")


def test_a_generated_playbook_with_stages_is_planned_part_by_part() -> None:
    problem = make_playbook_instance(1, tasks=200)
    result = solve_problem(problem, max_solve_s=0.8)
    assert violations(problem, result.schedule) == []
    assert result.schedule.key <= result.greedy.key
    assert result.gap <= 0.10


def test_required_labels_and_preferences_are_honoured_and_makespan_comes_first() -> None:
    specs = [TaskSpec(f"t{i}", Demand(f"t{i}", {"gpu": 1}, prefer=("h100",), require=frozenset({"gpu"})),
                      10) for i in range(2)]
    result = solve_problem(make_problem(specs, (), TWO_GPU_POOLS), max_solve_s=1.0)
    # both at once (makespan 10) beats both on the preferred pool (20): one gives up its preference
    assert result.makespan_ms == 10 and result.schedule.penalty == 1 and result.status == "OPTIMAL"
    assert sorted(result.schedule.pools) == [0, 1]
    chained = make_problem(specs, [(0, 1)], TWO_GPU_POOLS)
    result = solve_problem(chained, max_solve_s=1.0)
    # one after the other anyway: both on the preferred pool, and never on the cpu-only pool
    assert result.schedule.pools == (0, 0) and result.schedule.penalty == 0 and result.makespan_ms == 20


def test_capacity_is_shared_over_time_never_exceeded() -> None:
    pools = parse_pools("pools: [{name: p, capacity: {cpu: 3, memory_mb: 10}}]")
    specs = [TaskSpec("a", Demand("a", {"cpu": 2}), 5), TaskSpec("b", Demand("b", {"cpu": 2}), 5),
             TaskSpec("c", Demand("c", {"cpu": 1, "memory_mb": 10}), 5),
             TaskSpec("d", Demand("d", {"memory_mb": 6}), 5)]
    result = solve_problem(make_problem(specs, (), pools), max_solve_s=1.0)
    assert violations(result.problem, result.schedule) == []
    assert result.makespan_ms == 10 and result.status == "OPTIMAL"


def test_the_checker_catches_overuse_and_broken_precedence() -> None:
    pools = parse_pools("pools: [{name: p, capacity: {cpu: 1}}]")
    problem = make_problem([TaskSpec("a", Demand("a", {"cpu": 1}), 5),
                            TaskSpec("b", Demand("b", {"cpu": 1}), 5)], [(0, 1)], pools)
    overlapping = violations(problem, make_schedule(problem, [0, 3], [0, 0]))
    assert any("uses 2 of cpu" in v for v in overlapping)
    early = violations(problem, make_schedule(problem, [0, 0], [0, 0]))
    assert any("before its predecessor" in v for v in early)


def test_a_step_no_pool_can_run_is_an_error_naming_the_missing_capacity() -> None:
    result = validate_text("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: t}\nworkflow:\n"
                           "  - step: train\n    tool: {kind: python, code: x=1}\n"
                           "    spec: {resources: {gpu: 2}}\n")
    assert result.net is not None
    pools = parse_pools("pools: [{name: default, capacity: {cpu: 4}}, {name: gpu-small, capacity: {gpu: 1}}]")
    with pytest.raises(UnsatisfiableDemandError, match=r"step 'train' needs gpu: 2 but the largest gpu "
                                                       r"capacity is 1 \(pool 'gpu-small'\)"):
        plan(result.net, pools, max_solve_s=0.2)


def test_identical_loop_items_are_proven_optimal_quickly() -> None:
    text = ("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: t}\n"
            "workload: {xs: [1,2,3,4,5,6,7,8,9]}\nworkflow:\n  - step: prep\n"
            "    loop: {in: '{{ workload.xs }}', iterator: x, spec: {mode: parallel}}\n"
            "    tool: {kind: python, code: x=1}\n    next: {arcs: [{step: train}]}\n"
            "  - step: train\n    tool: {kind: python, code: x=1}\n    spec: {resources: {gpu: 2, cpu: 2}}\n")
    checked = validate_text(text)
    assert checked.net is not None
    pools = parse_pools('{"pools": [{"name": "g", "capacity": {"gpu": 4, "cpu": 4}}]}')
    result = plan(checked.net, pools, max_solve_s=1.0)
    assert result.status == "OPTIMAL" and result.makespan_ms == 4000 == result.lower_bound_ms
    assert result.solve_ms < 500


def test_the_plan_json_has_exactly_the_documented_keys() -> None:
    problem = make_instance(0, steps=30)
    data = solve_problem(problem, max_solve_s=0.3).as_json()
    assert set(data) == {"steps", "edges", "capacities", "schedule", "lower_bound_ms", "status", "solve_ms"}
    assert set(data["steps"][0]) == {"id", "step", "loop_index", "resources", "duration_ms", "pool"}
    assert set(data["schedule"]) == {"starts_ms", "ends_ms", "durations_ms", "makespan_ms"}
    assert data["status"] in ("OPTIMAL", "FEASIBLE", "GREEDY")
    assert len(data["schedule"]["starts_ms"]) == len(data["steps"]) == 30


def test_capacity_held_from_the_start_is_respected() -> None:
    pools = parse_pools("pools: [{name: p, capacity: {cpu: 2}}]")
    problem = make_problem([TaskSpec("a", Demand("a", {"cpu": 2}), 5)], (), pools,
                           occupied=[("p", {"cpu": 1}, 7)])
    schedule = greedy(problem)
    assert schedule.starts == (7,) and violations(problem, schedule) == []
    result = cpsat.solve(problem, schedule, max_time_s=0.5)
    assert result.schedule is not None and result.schedule.starts == (7,)


# ------------------------------------------------------------------------------------------- dispatch

def _used(placements: list[Placement], ready: list[ReadyTask], running: list[RunningTask]) -> dict:
    by_key = {t.key: t for t in ready}
    used: dict[tuple[str, str], float] = {}
    for task in running:
        for r, u in task.units.items():
            used[(task.pool, r)] = used.get((task.pool, r), 0) + u
    for p in placements:
        for r, u in by_key[p.key].demand.needs().items():
            used[(p.pool, r)] = used.get((p.pool, r), 0) + u
    return used


@pytest.mark.parametrize("budget", [0.0, 0.03, 0.2])
def test_order_ready_never_places_beyond_capacity(budget: float) -> None:
    rng = random.Random(int(budget * 1000) + 5)
    pools = TWO_GPU_POOLS
    for _ in range(25 if budget < 0.1 else 6):
        ready = []
        for k in range(rng.randint(1, 12)):
            units = {"cpu": rng.randint(0, 3)}
            if rng.random() < 0.4:
                units["gpu"] = rng.randint(1, 2)
            ready.append(ReadyTask(f"r{k}", Demand(f"s{k}", units, prefer=("h100",)),
                                   duration_ms=rng.randint(100, 2000), priority=rng.random()))
        running = [RunningTask(f"x{k}", rng.choice(pools.names), {"cpu": rng.randint(0, 2)},
                               remaining_ms=rng.choice([0, 300])) for k in range(rng.randint(0, 3))]
        placements = order_ready(ready, running, pools, budget_s=budget)
        assert len({p.key for p in placements}) == len(placements)
        for (pool, resource), amount in _used(placements, ready, running).items():
            capacity = pools.get(pool).units(resource)  # type: ignore[union-attr]
            running_there = sum(t.units.get(resource, 0) for t in running if t.pool == pool)
            assert amount <= max(capacity, running_there), (pool, resource, amount, capacity)
        for p in placements:
            task = next(t for t in ready if t.key == p.key)
            assert task.demand.needs().get("gpu", 0) <= 1  # gpu: 2 fits no pool: never placed
        if not running and any(t.demand.needs().get("gpu", 0) <= 1 for t in ready):
            assert placements, "something that fits an idle deployment is started"


def test_order_ready_takes_the_highest_priority_first_and_prefers_labels() -> None:
    pools = parse_pools("pools: [{name: a, capacity: {cpu: 2}},"
                        " {name: b, labels: [fast], capacity: {cpu: 2}}]")
    ready = [ReadyTask("low", Demand("low", {"cpu": 2}), priority=1.0),
             ReadyTask("high", Demand("high", {"cpu": 2}, prefer=("fast",)), priority=5.0),
             ReadyTask("mid", Demand("mid", {"cpu": 2}), priority=3.0)]
    placements = order_ready(ready, [], pools, budget_s=0.0)
    assert placements == [Placement("high", "b"), Placement("mid", "a")]
    busy = [RunningTask("x", "b", {"cpu": 2})]
    assert order_ready(ready, busy, pools, budget_s=0.0) == [Placement("high", "a")]
