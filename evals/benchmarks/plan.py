"""The planner at scale: 1,000 steps on 3 pools, solved within the 2 s budget.

Two seeded families of instances, on the same three pools (`default`: cpu, memory, Postgres connections,
http slots; `gpu`: 4 GPUs, labels gpu/h100; `highmem`: 512 GiB):
- `playbook`: a generated playbook of 5-8 stages, each 1-4 parallel loop steps fanned out from a noop
  and joined by the next (python, duckdb preferring highmem, postgres, http, GPU steps requiring a GPU),
  whose loops expand to 1,000 tasks through validation, the net and `problem_from_net`: the shape
  `noetl plan` sees (loop items share their step's median duration).
- `dag`: 1,000 distinct steps of those kinds, each after 1-3 of the 60 before it, log-normal durations:
  deep and balanced between precedence and capacity, the hard case for the lower bound.

Figures per instance: solve_ms (everything: greedy, bound, model, CP-SAT), the makespan, the greedy
makespan, the lower bound and the gap (makespan - bound) / bound, which over-states the distance to the
optimum by however loose the bound is. Targets: never worse than greedy, solve <= 2 s, median gap <= 5 %.

Run: `noetl bench plan [--json]` or `python -m evals.benchmarks.plan`.
"""

from __future__ import annotations

import json
import random
import statistics
from typing import Any

import yaml

from engine.net.validate import validate_text
from engine.plan.demands import Demand
from engine.plan.planner import solve_problem
from engine.plan.pools import Pool, PoolSet
from engine.plan.problem import Problem, TaskSpec, make_problem, problem_from_net
from engine.plan.schedule import violations

TARGET_SOLVE_MS = 2000.0
TARGET_MEDIAN_GAP = 0.05

POOLS = PoolSet((
    Pool("default", frozenset({"cpu"}),
         {"cpu": 32, "memory_mb": 65536, "pg_connections": 8, "http_slots": 16}),
    Pool("gpu", frozenset({"gpu", "h100"}), {"cpu": 16, "gpu": 4, "memory_mb": 131072}),
    Pool("highmem", frozenset({"highmem"}), {"cpu": 16, "memory_mb": 524288}),
), {}, "benchmark")

# kind: (weight, median duration ms)
KINDS: dict[str, tuple[float, float]] = {
    "python": (0.40, 2000), "duckdb": (0.15, 5000), "postgres": (0.15, 500), "http": (0.15, 800),
    "gpu": (0.10, 8000), "noop": (0.05, 1),
}


def _demand(kind: str, name: str, rng: random.Random) -> Demand:
    if kind == "python":
        return Demand(name, {"cpu": rng.choice([1, 1, 2, 4])})
    if kind == "duckdb":
        return Demand(name, {"cpu": 2, "memory_mb": rng.choice([8192, 16384, 32768, 65536])},
                      prefer=("highmem",))
    if kind == "postgres":
        return Demand(name, {"pg_connections": 1})
    if kind == "http":
        return Demand(name, {"http_slots": 1})
    if kind == "gpu":
        return Demand(name, {"gpu": rng.choice([1, 1, 2]), "cpu": 2}, prefer=("h100",),
                      require=frozenset({"gpu"}))
    return Demand(name)


def make_instance(seed: int, steps: int = 1000, window: int = 60) -> Problem:
    """A seeded `steps`-task, 3-pool instance (see the module docstring)."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    specs: list[TaskSpec] = []
    edges: list[tuple[int, int]] = []
    for i in range(steps):
        kind = rng.choices(kinds, weights)[0]
        median = KINDS[kind][1]
        duration = 1.0 if kind == "noop" else max(1.0, round(rng.lognormvariate(0, 0.5) * median))
        specs.append(TaskSpec(f"{kind}_{i}", _demand(kind, f"{kind}_{i}", rng), duration))
        if i:
            for j in rng.sample(range(max(0, i - window), i), k=min(i, rng.randint(1, 3))):
                edges.append((j, i))
    return make_problem(specs, edges, POOLS)


# (kind, median ms, spec.resources) of the loop steps of a generated playbook
_PLAYBOOK_STEPS: list[tuple[str, float, dict[str, Any]]] = [
    ("http", 800, {}),
    ("postgres", 500, {}),
    ("python", 2000, {"cpu": 1}),
    ("python", 3000, {"cpu": 2}),
    ("duckdb", 5000, {"cpu": 2, "memory_mb": 16384, "prefer": ["highmem"]}),
    ("duckdb", 8000, {"cpu": 4, "memory_mb": 65536, "prefer": ["highmem"]}),
    ("python", 8000, {"gpu": 1, "cpu": 2, "require": ["gpu"], "prefer": ["h100"]}),
    ("python", 12000, {"gpu": 2, "cpu": 4, "require": ["gpu"], "prefer": ["h100"]}),
]
_TOOLS = {"http": {"kind": "http", "url": "https://example.com/{{ item }}"},
          "postgres": {"kind": "postgres", "auth": "pg", "command": "select {{ item }}"},
          "python": {"kind": "python", "code": "result = item"},
          "duckdb": {"kind": "duckdb", "command": "select {{ item }}"}}


def make_playbook(seed: int, tasks: int = 1000) -> tuple[str, dict[str, float]]:
    """A seeded playbook whose loops expand to `tasks` tasks: stages of 1-4 parallel loop steps (fan-out
    from a noop, joined by the next noop), items from the workload; and the step durations (the medians
    an event log would give). Returns the YAML text and the durations."""
    rng = random.Random(seed)
    stages = rng.randint(5, 8)
    branches = [rng.randint(1, 4) for _ in range(stages)]
    loops = sum(branches)
    budget = tasks - (stages + 1) - loops  # one noop per stage boundary, at least one item per loop
    cuts = sorted(rng.randint(0, budget) for _ in range(loops - 1))
    counts = [b - a + 1 for a, b in zip([0, *cuts], [*cuts, budget], strict=True)]
    workload: dict[str, Any] = {}
    workflow: list[dict[str, Any]] = []
    durations: dict[str, float] = {}
    k = 0
    for stage in range(stages + 1):
        gate = f"stage_{stage}"
        names = [f"s{stage}_b{b}" for b in range(branches[stage])] if stage < stages else []
        step: dict[str, Any] = {"step": gate, "tool": {"kind": "noop"}}
        if names:
            step["next"] = {"spec": {"mode": "inclusive"}, "arcs": [{"step": n} for n in names]}
        workflow.append(step)
        durations[gate] = 1
        for name in names:
            kind, median, resources = rng.choice(_PLAYBOOK_STEPS)
            workload[name] = list(range(counts[k]))
            loop: dict[str, Any] = {"in": f"{{{{ workload.{name} }}}}", "iterator": "item",
                                    "spec": {"mode": "parallel"}}
            if rng.random() < 0.25:
                loop["spec"]["max_in_flight"] = rng.choice([4, 8, 16])
            entry: dict[str, Any] = {"step": name, "loop": loop, "tool": _TOOLS[kind],
                                     "next": {"arcs": [{"step": f"stage_{stage + 1}"}]}}
            if resources:
                entry["spec"] = {"resources": resources}
            workflow.append(entry)
            durations[name] = max(1.0, round(rng.lognormvariate(0, 0.4) * median))
            k += 1
    doc = {"apiVersion": "noetl.io/v2", "kind": "Playbook", "metadata": {"name": f"bench_plan_{seed}"},
           "workload": workload, "workflow": workflow}
    return yaml.safe_dump(doc, sort_keys=False), durations


def make_playbook_instance(seed: int, tasks: int = 1000) -> Problem:
    """The problem of a generated playbook, through validation, the net and loop expansion."""
    text, durations = make_playbook(seed, tasks)
    checked = validate_text(text, f"bench_plan_{seed}.yaml")
    if checked.net is None:
        raise RuntimeError("the generated playbook is invalid: "
                           + "; ".join(d.format() for d in checked.errors))
    return problem_from_net(checked.net, POOLS, durations=durations)


FAMILIES = {"playbook": make_playbook_instance, "dag": make_instance}


def run_instance(seed: int, *, family: str = "playbook", steps: int = 1000,
                 max_solve_s: float = 2.0) -> dict[str, Any]:
    problem = FAMILIES[family](seed, steps)
    result = solve_problem(problem, max_solve_s=max_solve_s, seed=seed)
    problems = violations(problem, result.schedule)
    return {
        "family": family, "seed": seed, "steps": problem.size, "pools": len(problem.pools),
        "solve_ms": round(result.solve_ms, 1),
        "makespan_ms": result.makespan_ms,
        "greedy_makespan_ms": result.greedy.makespan,
        "lower_bound_ms": result.lower_bound_ms,
        "gap": round(result.gap, 4),
        "greedy_gap": round((result.greedy.makespan - result.lower_bound_ms)
                            / max(1, result.lower_bound_ms), 4),
        "status": result.status,
        "valid": not problems,
    }


def _summary(instances: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "solve_ms": statistics.median(i["solve_ms"] for i in instances),
        "max_solve_ms": max(i["solve_ms"] for i in instances),
        "makespan_ms": statistics.median(i["makespan_ms"] for i in instances),
        "greedy_makespan_ms": statistics.median(i["greedy_makespan_ms"] for i in instances),
        "lower_bound_ms": statistics.median(i["lower_bound_ms"] for i in instances),
        "gap": statistics.median(i["gap"] for i in instances),
        "greedy_gap": statistics.median(i["greedy_gap"] for i in instances),
    }


def run(seeds: int = 5, *, steps: int = 1000, max_solve_s: float = 2.0,
        families: tuple[str, ...] = ("playbook", "dag")) -> dict[str, Any]:
    """The benchmark over `seeds` seeded instances of each family, with medians and the targets met.

    Families: `playbook` (a generated playbook of stages of parallel loops joined by noops, through
    validation and loop expansion: the shape `noetl plan` sees) and `dag` (1,000 distinct steps, each
    after 1-3 of the 60 before it: deep and balanced between precedence and capacity, the hard case for
    the lower bound)."""
    instances = [run_instance(seed, family=family, steps=steps, max_solve_s=max_solve_s)
                 for family in families for seed in range(seeds)]
    by_family = {f: _summary([i for i in instances if i["family"] == f]) for f in families}
    met = {
        "never_worse_than_greedy": all(i["makespan_ms"] <= i["greedy_makespan_ms"] for i in instances),
        "solve_within_2s": all(i["solve_ms"] <= TARGET_SOLVE_MS for i in instances),
        "schedules_valid": all(i["valid"] for i in instances),
    }
    for family, summary in by_family.items():
        met[f"median_gap_within_5pct_{family}"] = summary["gap"] <= TARGET_MEDIAN_GAP
    return {
        "benchmark": "plan", "steps": steps, "pools": len(POOLS), "max_solve_s": max_solve_s,
        "instances": instances,
        "median": by_family,
        "targets": {"solve_ms": TARGET_SOLVE_MS, "median_gap": TARGET_MEDIAN_GAP},
        "met": met,
    }


def format_report(result: dict[str, Any]) -> str:
    lines = [f"plan benchmark: {result['steps']} steps, {result['pools']} pools, "
             f"budget {result['max_solve_s']:g} s"]
    lines.append(f"{'family':>8} {'seed':>4} {'solve ms':>9} {'makespan':>9} {'greedy':>9} {'bound':>9} "
                 f"{'gap':>7} status")
    for i in result["instances"]:
        lines.append(f"{i['family']:>8} {i['seed']:>4} {i['solve_ms']:>9.1f} {i['makespan_ms']:>9} "
                     f"{i['greedy_makespan_ms']:>9} {i['lower_bound_ms']:>9} {i['gap']:>7.2%} {i['status']}")
    for family, m in result["median"].items():
        lines.append(f"median {family}: solve {m['solve_ms']:.1f} ms (max {m['max_solve_ms']:.1f}), "
                     f"gap {m['gap']:.2%} (greedy alone {m['greedy_gap']:.2%})")
    lines += [f"  {name}: {'met' if ok else 'MISSED'}" for name, ok in result["met"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
