"""Checking and planning playbooks as `noetl validate` and `noetl plan` do, for the console: the same
diagnostics (with the deployment's pool warnings), and one execution's plan on the deployment's pools
with durations from the event log (CP-SAT with the greedy fallback, run off the event loop)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from control_plane.store import Store
from control_plane.store.durations import step_duration_medians
from engine.net.validate import Validation
from engine.plan.checks import validate_text_with_pools
from engine.plan.planner import Plan, plan
from engine.plan.pools import PoolSet
from engine.plan.problem import UnsatisfiableDemandError

PLAN_SOLVE_S = 1.0  # the console's budget for one plan (`noetl plan` takes 2 s by default)


@dataclass(frozen=True)
class PlanOutcome:
    """One execution's plan of a stored playbook version, or why there is none; `notes` say where the
    durations came from and what the planner assumed (loops planned as one item, cycles, ...)."""

    pools: PoolSet
    plan: Plan | None = None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why there is no plan (invalid, or a step no pool can run)


class PlanningService:
    def __init__(self, store: Store, declared: PoolSet | None) -> None:
        self.store = store
        self.declared = declared  # the deployment's pools file; None: the default pool set is planned on

    @property
    def pools(self) -> PoolSet:
        return self.declared or PoolSet.default()

    async def validate(self, text: str, file: str = "<pasted>") -> Validation:
        """Every problem of `text` located as FILE:LINE:COL PATH: MESSAGE (errors and warnings, with the
        unrunnable-step warnings when the deployment declares pools), as `noetl validate`; registers
        nothing. Parsing a large paste takes a while: off the event loop."""
        return await asyncio.to_thread(validate_text_with_pools, text, file, self.declared)

    async def durations(self, path: str) -> tuple[dict[str, float], str]:
        """(step -> median ms of its past successful runs, a sentence saying where durations come from)."""
        medians = await step_duration_medians(self.store.db, path)
        if not medians:
            return {}, f"durations: per-kind defaults (the event log has no successful run of '{path}')"
        return medians, ("durations: medians of past successful runs from the event log "
                         f"({len(medians)} steps)")

    async def plan(self, path: str, checked: Validation, *, max_solve_s: float = PLAN_SOLVE_S) -> PlanOutcome:
        """The plan of one execution of the playbook stored at catalog `path` (as `validate` checked it)
        on the pools."""
        pools = self.pools
        if checked.net is None:
            errors = "; ".join(d.format() for d in checked.errors) or "it does not compile"
            return PlanOutcome(pools, problem=f"the playbook does not validate: {errors}")
        durations, source = await self.durations(path)
        net = checked.net
        try:  # CPU-bound (CP-SAT up to max_solve_s): off the event loop
            result = await asyncio.to_thread(plan, net, pools, durations=durations, max_solve_s=max_solve_s)
        except UnsatisfiableDemandError as exc:
            return PlanOutcome(pools, notes=[source], problem=str(exc))
        return PlanOutcome(pools, plan=result, notes=[source, *result.problem.notes])
