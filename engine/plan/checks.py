"""The validation check that needs the deployment's pools: a step that no pool can ever run.

It lives here, above engine.net, because it needs the pools and the demands; `noetl validate` and
`noetl plan` add it to the validation of engine.net.validate when pools are known.
"""

from __future__ import annotations

from pathlib import Path

from engine.dsl.diagnostics import Issue
from engine.dsl.model import Playbook
from engine.net.validate import Validation, validate_file, validate_text
from engine.plan.demands import infeasibility_reason, step_demand
from engine.plan.pools import PoolSet


def unrunnable_steps(playbook: Playbook, pools: PoolSet) -> list[Issue]:
    """A warning per step whose demand no pool can ever satisfy, naming the missing capacity."""
    issues = []
    for i, step in enumerate(playbook.workflow):
        reason = infeasibility_reason(step_demand(step, pools, playbook), pools)
        if reason is None:
            continue
        path = ("workflow", i, "spec", "resources") if step.spec.resources is not None else ("workflow", i)
        issues.append(Issue(path, f"{reason}: no pool can ever run this step, so its dispatch would fail "
                                  f"(pools: {pools.source})", "unsatisfiable_resources", "warning"))
    return issues


def add_pool_checks(result: Validation, pools: PoolSet) -> Validation:
    """`result` with the pool warnings added (in place) when the playbook is otherwise valid."""
    playbook = result.playbook
    if playbook is None:
        return result
    result.diagnostics.extend(result.loaded.locate(issue) for issue in unrunnable_steps(playbook, pools))
    result.diagnostics.sort(key=lambda d: (d.line, d.column, d.severity, d.message))
    return result


def validate_file_with_pools(path: str | Path, pools: PoolSet | None) -> Validation:
    """engine.net.validate.validate_file plus, when `pools` is given, the unrunnable-step warnings."""
    result = validate_file(path)
    return add_pool_checks(result, pools) if pools is not None else result


def validate_text_with_pools(text: str, file: str, pools: PoolSet | None) -> Validation:
    result = validate_text(text, file)
    return add_pool_checks(result, pools) if pools is not None else result
