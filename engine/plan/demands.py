"""What a step holds while it runs (spec section 11), and which pools can ever give it that.

A step's demand is, per resource, the units its `spec.resources` names, else the default of its tool
kind (`KIND_DEFAULTS`, overridable by the pools file's `defaults:`). A pipeline holds, per resource, the
largest demand of its tasks (they run one after another on one worker); a workbook call demands what the
workbook task's tools demand.

Decided here:
- An explicit value replaces the kind's default for that resource only (`cpu: 0` removes it).
- A resource that comes only from a kind default and that NO pool declares is dropped: the deployment
  does not meter it (a deployment without `pg_connections` does not limit Postgres steps). A resource the
  playbook names explicitly is always kept, so `gpu: 1` on a deployment without GPUs is unsatisfiable.
- `pool` (explicit, or from a kind default) is a hard choice; `require: [labels]` keeps only pools that
  carry every label; `prefer: [labels]` ranks the remaining pools: a pool carrying `prefer[0]` costs 0,
  one carrying only `prefer[1]` costs 1, ..., one carrying none costs `len(prefer)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.diagnostics import quote_list
from engine.dsl.model import Playbook, Step
from engine.plan.pools import Pool, PoolSet

# units a step of each tool kind holds while it runs, when its spec.resources does not say
KIND_DEFAULTS: Mapping[str, Mapping[str, float]] = {
    "python": {"cpu": 1},
    "shell": {"cpu": 1},
    "duckdb": {"cpu": 1, "memory_mb": 512},
    "postgres": {"pg_connections": 1},
    "http": {"http_slots": 1},
    "clickhouse": {"http_slots": 1},
    "qdrant": {"http_slots": 1},
    "snowflake": {"http_slots": 1},
    "playbook": {},  # a child execution's steps hold their own resources
    "noop": {},
    "nats": {},  # a request or two to a NATS server: nothing a pool meters
}
# how long one run of a step of each kind takes (ms) when the event log has no history of the step
KIND_DURATIONS_MS: Mapping[str, float] = {
    "noop": 1, "python": 1000, "shell": 1000, "http": 500, "postgres": 200, "duckdb": 500,
    "clickhouse": 500, "qdrant": 200, "snowflake": 2000, "playbook": 5000, "nats": 20,
}
DEFAULT_DURATION_MS = 1000.0


def fmt_units(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class Demand:
    """The resources one run of a step (or one loop item) holds, and where it may run."""

    step: str
    units: Mapping[str, float] = field(default_factory=dict)
    pool: str | None = None
    prefer: tuple[str, ...] = ()
    require: frozenset[str] = frozenset()
    explicit: frozenset[str] = frozenset()  # the resources the playbook itself names
    kinds: tuple[str, ...] = ()

    def needs(self) -> dict[str, float]:
        return {r: u for r, u in self.units.items() if u > 0}

    def describe(self) -> str:
        parts = [f"{r}: {fmt_units(u)}" for r, u in self.needs().items()]
        return ", ".join(parts) or "nothing"


def step_kinds(step: Step, playbook: Playbook | None = None) -> tuple[str, ...]:
    """The tool kinds a step runs, workbook calls resolved to the workbook task's tools."""
    kinds: list[str] = []
    for tool in step.tool:
        if tool.kind == "workbook" and playbook is not None:
            for task in playbook.workbook:
                if task.name == tool.name:
                    kinds.extend(t.kind for t in task.tool)
                    break
            else:
                kinds.append("python")
        else:
            kinds.append(tool.kind)
    return tuple(kinds)


def kind_table(pools: PoolSet | None) -> dict[str, Mapping[str, Any]]:
    table: dict[str, Mapping[str, Any]] = {k: dict(v) for k, v in KIND_DEFAULTS.items()}
    if pools is not None:
        table.update({k: dict(v) for k, v in pools.kind_defaults.items()})
    return table


def step_demand(step: Step, pools: PoolSet, playbook: Playbook | None = None) -> Demand:
    """The demand of one run of `step` (one item of a loop step) on this deployment's pools."""
    kinds = step_kinds(step, playbook)
    table = kind_table(pools)
    declared = set(pools.resources)
    units: dict[str, float] = {}
    pool: str | None = None
    prefer: tuple[str, ...] = ()
    require: set[str] = set()
    for kind in kinds:
        entry = table.get(kind, {})
        for key, value in entry.items():
            if key == "pool":
                pool = pool or str(value)
            elif key == "prefer":
                prefer = prefer or tuple(value)
            elif key == "require":
                require |= set(value)
            elif key in declared:
                units[key] = max(units.get(key, 0.0), float(value))
    explicit: set[str] = set()
    resources = step.spec.resources
    if resources is not None:
        given: dict[str, Any] = {"cpu": resources.cpu, "gpu": resources.gpu,
                                 "memory_mb": resources.memory_mb, **(resources.model_extra or {})}
        for key, value in given.items():
            if value is None:
                continue
            explicit.add(key)
            units[key] = float(value)
        if resources.pool:
            pool = resources.pool
        if resources.prefer is not None:
            prefer = tuple(resources.prefer)
        if resources.require is not None:
            require = set(resources.require)
    return Demand(step=step.step, units={r: u for r, u in units.items() if u > 0}, pool=pool,
                  prefer=prefer, require=frozenset(require), explicit=frozenset(explicit), kinds=kinds)


def step_duration_ms(step: Step, playbook: Playbook | None = None) -> float:
    """The per-kind default duration of one run of a step: the sum over its pipeline's tasks."""
    return float(sum(KIND_DURATIONS_MS.get(k, DEFAULT_DURATION_MS) for k in step_kinds(step, playbook)))


# ---------------------------------------------------------------------------------------- feasibility

def _eligible(demand: Demand, pools: Iterable[Pool]) -> list[Pool]:
    """Pools that the demand's `pool` and `require` allow (capacity not considered)."""
    out = [p for p in pools if demand.pool is None or p.name == demand.pool]
    return [p for p in out if demand.require <= p.labels]


def fits(demand: Demand, pool: Pool) -> bool:
    return all(pool.units(r) >= u for r, u in demand.needs().items())


def feasible_pools(demand: Demand, pools: PoolSet) -> tuple[Pool, ...]:
    """The pools that could ever run the step (empty: it can never run; see `infeasibility_reason`)."""
    return tuple(p for p in _eligible(demand, pools) if fits(demand, p))


def preference_penalty(demand: Demand, pool: Pool) -> int:
    """0 when the pool carries the first preferred label, 1 the second, ..., len(prefer) for none."""
    for rank, label in enumerate(demand.prefer):
        if label in pool.labels:
            return rank
    return len(demand.prefer)


def ranked_pools(demand: Demand, pools: PoolSet) -> tuple[tuple[Pool, int], ...]:
    """Feasible pools with their preference penalty, best first (declaration order breaks ties)."""
    options = [(p, preference_penalty(demand, p)) for p in feasible_pools(demand, pools)]
    return tuple(sorted(options, key=lambda o: o[1]))


def infeasibility_reason(demand: Demand, pools: PoolSet) -> str | None:
    """Why no pool can ever run the step, naming the missing capacity; None when some pool can."""
    if feasible_pools(demand, pools):
        return None
    who = f"step '{demand.step}'"
    if demand.pool is not None and pools.get(demand.pool) is None:
        return (f"{who} asks for pool '{demand.pool}' but no such pool is configured "
                f"(pools: {quote_list(pools.names)})")
    candidates = _eligible(demand, pools)
    if not candidates:
        labels = ", ".join(sorted(demand.require))
        where = f"pool '{demand.pool}'" if demand.pool else "no pool"
        have = "; ".join(f"'{p.name}' has {', '.join(sorted(p.labels)) or 'no labels'}"
                         for p in ([pools.get(demand.pool)] if demand.pool else pools.pools) if p)
        verb = "lacks" if demand.pool else "has all of"
        return f"{who} requires labels {labels} but {where} {verb} them ({have})"
    needs = demand.needs()
    for resource, units in needs.items():
        best = max(candidates, key=lambda p: p.units(resource))
        if best.units(resource) >= units:
            continue
        if best.units(resource) == 0:
            if demand.pool:
                tail = f"pool '{demand.pool}' has no {resource} capacity"
            elif demand.require:
                tail = f"no pool with labels {', '.join(sorted(demand.require))} has any {resource} capacity"
            else:
                tail = f"no pool has any {resource} capacity"
            return (f"{who} needs {resource}: {fmt_units(units)} but {tail} "
                    f"(pools: {quote_list(p.name for p in candidates)})")
        return (f"{who} needs {resource}: {fmt_units(units)} but the largest {resource} capacity is "
                f"{best.units(resource)} (pool '{best.name}')")
    have = "; ".join(f"'{p.name}' has " + ", ".join(f"{r}: {p.units(r)}" for r in needs)
                     for p in candidates)
    return f"{who} needs {demand.describe()} at once but no single pool has all of it ({have})"
