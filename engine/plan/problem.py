"""The scheduling problem of one execution: tasks (step runs, loop items), precedence, pools.

`problem_from_net(net, pools, payload=..., durations=...)` builds it from a compiled playbook;
`make_problem(specs, edges, pools)` from tasks given directly (evals, benchmarks, dispatch).

How a playbook becomes tasks and edges (decided here, and said in `Problem.notes` when it applies):
- Every step reachable from the entry step (and the final step) is planned once: a cycle (a step
  routing back to an earlier one, e.g. to poll) is planned as ONE run of each of its steps; the arcs
  that close a cycle (back edges of a depth-first walk from the entry, YAML order) are dropped.
- Every arc is planned as taken: exclusive and inclusive routing alike, whatever the `when`, so the plan
  covers every branch that may run (for exclusive routing it is an upper bound on the work).
- A step starts after ALL its planned predecessors have finished: that is the join barrier of spec 4.1,
  and for a single predecessor the plain arc. The final step starts after every other task.
- A loop whose `in` is a literal list, or a template that reads only the workload (merged with the
  payload), is expanded into one task per item. A sequential loop chains its items; a parallel loop with
  `max_in_flight: k` makes item i+k wait for item i (k lanes, at most k items at once). A loop whose
  items are only known at run time (it reads a step result or `ctx`) is planned as ONE task of one
  item's duration. An empty list is a task of no time.
- Durations: `durations[step]` (ms; for a loop step, one item) when given — the CLI passes the median of
  the step's past successful runs from the event log — else the per-kind default of
  `engine.plan.demands.KIND_DURATIONS_MS` (summed over a pipeline's tasks). Times are whole ms.
- Units are made whole per resource for the solvers: a resource with a fractional demand anywhere
  (`cpu: 0.5`) is counted in thousandths (`Problem.scale`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.context import build_context, merge_payload
from engine.dsl.model import Step
from engine.dsl.templates import TemplateRenderer
from engine.errors import EngineError, TemplateError
from engine.net.net import Net
from engine.plan.demands import Demand, infeasibility_reason, ranked_pools, step_demand, step_duration_ms
from engine.plan.pools import PoolSet

_RENDERER = TemplateRenderer()
FRACTION_SCALE = 1000


class UnsatisfiableDemandError(EngineError):
    """Some steps can never run on the configured pools; `reasons` maps step -> what is missing."""

    code = "unsatisfiable_demand"

    def __init__(self, reasons: Mapping[str, str], pools_source: str) -> None:
        self.reasons = dict(reasons)
        lines = "\n  ".join(reasons.values())
        super().__init__(f"{len(reasons)} step{'s' if len(reasons) != 1 else ''} can never run on the "
                         f"configured pools ({pools_source}):\n  {lines}",
                         fix="give a pool the missing capacity or labels, or change the step's "
                             "spec.resources")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task as given to `make_problem`: a step run or a loop item, with its demand and duration."""

    step: str
    demand: Demand
    duration_ms: float
    loop_index: int | None = None


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    step: str
    loop_index: int | None
    units: Mapping[str, float]  # the demand as declared (for output)
    duration_ms: int
    options: tuple[tuple[int, int], ...]  # (pool index, preference penalty), best first


@dataclass(frozen=True)
class Problem:
    """Tasks, precedence and pools, with the whole-unit arrays the solvers read."""

    tasks: tuple[Task, ...]
    edges: tuple[tuple[int, int], ...]  # (before, after): `after` starts once `before` has ended
    pools: PoolSet
    resources: tuple[str, ...]  # resources some task demands
    scale: Mapping[str, int]  # resource -> solver units per declared unit
    demand: tuple[tuple[int, ...], ...]  # task -> units per resource (scaled)
    capacity: tuple[tuple[int, ...], ...]  # pool -> units per resource (scaled)
    preds: tuple[tuple[int, ...], ...]
    succs: tuple[tuple[int, ...], ...]
    notes: tuple[str, ...] = ()
    unsatisfiable: Mapping[str, str] = field(default_factory=dict)  # step -> reason
    duration_sources: Mapping[str, str] = field(default_factory=dict)  # step -> "history" | "default"
    # capacity already held from time 0 (running tasks at dispatch time): (pool index, until ms, units)
    occupied: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    durations: tuple[int, ...] = field(init=False)  # of the tasks, in ms

    def __post_init__(self) -> None:
        object.__setattr__(self, "durations", tuple(t.duration_ms for t in self.tasks))

    @property
    def size(self) -> int:
        return len(self.tasks)

    def topological_order(self) -> list[int]:
        indegree = [len(p) for p in self.preds]
        ready = [i for i, d in enumerate(indegree) if d == 0]
        out: list[int] = []
        while ready:
            node = ready.pop()
            out.append(node)
            for nxt in self.succs[node]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(out) != len(self.tasks):
            raise ValueError("the precedence edges have a cycle")
        return out

    def capacities_json(self) -> dict[str, dict[str, int]]:
        return {p.name: dict(p.capacity) for p in self.pools}


def make_problem(specs: Sequence[TaskSpec], edges: Iterable[tuple[int, int]], pools: PoolSet, *,
                 notes: Iterable[str] = (), duration_sources: Mapping[str, str] | None = None,
                 occupied: Sequence[tuple[str, Mapping[str, float], float]] = ()) -> Problem:
    """The problem of these tasks (ids = positions in `specs`); `unsatisfiable` lists the steps that
    no pool can ever run (they get no pool option). `occupied` is capacity already held from time 0:
    (pool name, units, until ms), e.g. the steps running when a dispatcher asks what to start next."""
    resources: dict[str, None] = {}
    for spec in specs:
        for r in spec.demand.needs():
            resources.setdefault(r)
    fractional = {r for s in specs for r, u in s.demand.units.items() if not float(u).is_integer()}
    fractional |= {r for _, units, _ in occupied for r, u in units.items() if not float(u).is_integer()}
    scale = {r: FRACTION_SCALE if r in fractional else 1 for r in resources}
    tasks: list[Task] = []
    demand: list[tuple[int, ...]] = []
    unsatisfiable: dict[str, str] = {}
    pool_index = {name: i for i, name in enumerate(pools.names)}
    for i, spec in enumerate(specs):
        options = tuple((pool_index[p.name], penalty) for p, penalty in ranked_pools(spec.demand, pools))
        if not options:
            unsatisfiable.setdefault(spec.step, infeasibility_reason(spec.demand, pools) or "")
        units = spec.demand.needs()
        tasks.append(Task(i, spec.step, spec.loop_index, units, max(0, int(math.ceil(spec.duration_ms))),
                          options))
        demand.append(tuple(int(math.ceil(units.get(r, 0) * scale[r] - 1e-9)) for r in resources))
    capacity = tuple(tuple(p.units(r) * scale[r] for r in resources) for p in pools)
    held = tuple((pool_index[name], max(1, int(math.ceil(until))),
                  tuple(int(math.ceil(units.get(r, 0) * scale[r] - 1e-9)) for r in resources))
                 for name, units, until in occupied if name in pool_index)
    unique = sorted({(a, b) for a, b in edges if a != b})
    preds: list[list[int]] = [[] for _ in specs]
    succs: list[list[int]] = [[] for _ in specs]
    for a, b in unique:
        preds[b].append(a)
        succs[a].append(b)
    problem = Problem(tuple(tasks), tuple(unique), pools, tuple(resources), scale, tuple(demand), capacity,
                      tuple(map(tuple, preds)), tuple(map(tuple, succs)), tuple(notes), unsatisfiable,
                      dict(duration_sources or {}), held)
    problem.topological_order()  # refuse cycles early
    return problem


# ---------------------------------------------------------------------------------------- from a net



def planning_workload(net: Net, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The workload as an execution would see it at start: the playbook's, deep-merged with the payload,
    its templates rendered when they read only the workload itself (else kept as written)."""
    raw = merge_payload(net.playbook.workload, payload or {})
    try:
        rendered = _RENDERER.render(raw, {**raw, "payload": dict(payload or {}), "workload": raw})
    except TemplateError:
        return raw
    return rendered.value if isinstance(rendered.value, dict) and not rendered.warnings else raw


def loop_items(step: Step, workload: Mapping[str, Any]) -> list[Any] | None:
    """The items of a loop when they are known before the run, else None."""
    assert step.loop is not None
    spec = step.loop.in_
    if spec is None:  # a cursor loop: its rows are claimed at run time
        return None
    if isinstance(spec, list):
        return spec
    allowed = {"workload", "payload", *workload, *_RENDERER.env.globals}
    if not _RENDERER.referenced_names(spec) <= allowed:
        return None
    try:
        rendered = _RENDERER.render(spec, build_context(workload=workload))
    except TemplateError:
        return None
    if rendered.warnings or not isinstance(rendered.value, list):
        return None
    return rendered.value


def _forward_edges(net: Net, steps: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The arcs among `steps` without those closing a cycle (back edges of a DFS from the entry)."""
    allowed = set(steps)
    succ = {s: [a.target for a in net.transition(s).arcs if a.target in allowed] for s in steps}
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    edges: list[tuple[str, str]] = []
    dropped: list[str] = []
    roots = [net.entry] + ([net.final] if net.final else []) + list(steps)
    for root in roots:
        if root not in allowed or root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                continue
            if state.get(child) == 1:
                dropped.append(f"{node} -> {child}")
                continue
            edges.append((node, child))
            if child not in state:
                state[child] = 1
                stack.append((child, iter(succ[child])))
    return edges, dropped


def problem_from_net(net: Net, pools: PoolSet, *, payload: Mapping[str, Any] | None = None,
                     durations: Mapping[str, float] | None = None) -> Problem:
    """The scheduling problem of one execution of `net` (see the module's docstring for the rules)."""
    playbook = net.playbook
    durations = durations or {}
    notes: list[str] = []
    steps = [s for s in net.order if s in net.reachable]
    skipped = [s for s in net.order if s not in net.reachable]
    if skipped:
        notes.append(f"not planned (unreachable from '{net.entry}'): {', '.join(skipped)}")
    workload = planning_workload(net, payload)
    specs: list[TaskSpec] = []
    ids: dict[str, list[int]] = {}
    sources: dict[str, str] = {}
    edges: list[tuple[int, int]] = []
    for name in steps:
        step = playbook.step(name)
        demand = step_demand(step, pools, playbook)
        if name in durations and durations[name] is not None and durations[name] >= 0:
            duration, sources[name] = float(durations[name]), "history"
        else:
            duration, sources[name] = step_duration_ms(step, playbook), "default"
        items: list[Any] = [None]
        if step.loop is not None:
            known = loop_items(step, workload)
            if known is None:
                notes.append(f"loop '{name}': its items are known only at run time; planned as one item")
            else:
                items = known
        first = len(specs)
        if not items:  # an empty loop completes at once: a task of no time that holds nothing
            specs.append(TaskSpec(name, Demand(name, pool=demand.pool), 0.0, None))
        for index, _ in enumerate(items):
            specs.append(TaskSpec(name, demand, duration, index if step.loop is not None else None))
        ids[name] = list(range(first, len(specs)))
        if step.loop is not None and len(items) > 1:
            limit = step.loop.spec.max_in_flight  # a template is not known before the run: no limit
            lanes = 1 if step.loop.spec.mode == "sequential" else (
                limit if isinstance(limit, int) else len(items))
            members = ids[name]
            edges.extend((members[k], members[k + lanes]) for k in range(len(members) - lanes))
    arcs, dropped = _forward_edges(net, steps)
    if dropped:
        notes.append(f"cycles planned as one run of each step (arcs not planned: {', '.join(dropped)})")
    if any(net.transition(s).mode == "exclusive" and len(net.transition(s).arcs) > 1 for s in steps):
        notes.append("every arc is planned as taken (exclusive routing takes one of them at run time)")
    for a, b in arcs:
        edges.extend((x, y) for x in ids[a] for y in ids[b])
    if net.final and net.final in ids:
        final = ids[net.final]
        after = descendants_of(net.final, arcs) | {net.final}
        for name in steps:
            if name not in after:
                edges.extend((x, y) for x in ids[name] for y in final)
    return make_problem(specs, edges, pools, notes=notes, duration_sources=sources)


def descendants_of(node: str, edges: Iterable[tuple[str, str]]) -> set[str]:
    forward: dict[str, list[str]] = {}
    for a, b in edges:
        forward.setdefault(a, []).append(b)
    seen: set[str] = set()
    stack = list(forward.get(node, []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(forward.get(current, []))
    return seen
