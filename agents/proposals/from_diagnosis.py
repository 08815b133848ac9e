"""From a diagnosis to the configuration change that would have prevented the failure: PURE.

`plan(diagnosis, step, config)` returns at most one draft per diagnosis (a step takes one open proposal at
a time, so everything the step needs goes into one change) and the reasons for what it left out:

| root cause (spec 9 `error.kind`)      | change                                                           |
|---------------------------------------|------------------------------------------------------------------|
| any, transient or intermittent        | a retry rule with exponential backoff on that error kind         |
| any, permanent                        | NEVER a retry (a permanent failure only fails again, later)      |
| `timeout`, `db_timeout` (near limit) | a larger timeout (twice the limit, or 1.5 x the slowest success) |
| `resource_exhausted`                  | another known pool (the largest that fits, if capacities known) |
| `rate_limit`                          | a parallel loop: half the concurrency; and a slower retry        |
| permanent code, query, credential ... | nothing: they need a fix in the playbook, its code or its data   |

The diagnosis' own suggested fixes (agents.diagnosis.fixes: `{"step", "set": {"retry" | "spec" | "loop"}}`)
give the numbers when they have them (attempts, delay, HTTP statuses, a pool, a concurrency); every value is
kept inside the guardrails' bounds, which still check the draft when it is submitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.guards import GuardrailConfig
from policies.model import OverlayChange, ProposalDraft, StepInfo, Target

RETRYABLE_TRANSIENCE = ("transient", "intermittent")
NEVER_RETRIED = frozenset({"cancelled"})  # someone stopped it: running it again is not a fix
HTTP_KINDS = frozenset({"rate_limit", "server_error", "client_error", "not_found"})  # retried by status too


@dataclass
class Plan:
    drafts: list[ProposalDraft] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not proposed, and why


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a diagnosis given as the model or as its JSON."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _as_json(diagnosis: Any) -> dict[str, Any]:
    if hasattr(diagnosis, "model_dump"):
        return dict(diagnosis.model_dump(mode="json"))
    return dict(diagnosis) if isinstance(diagnosis, Mapping) else {}


def _hints(diagnosis: Any, step: str) -> dict[str, Any]:
    """The numbers the diagnosis' suggested fixes carry for this step."""
    hints: dict[str, Any] = {}
    for fix in field_of(diagnosis, "suggested_fixes") or []:
        change = field_of(fix, "change") or {}
        if not isinstance(change, Mapping) or change.get("step") not in (None, step):
            continue
        patch = change.get("set") or {}
        if not isinstance(patch, Mapping):
            continue
        retry = patch.get("retry")
        if isinstance(retry, Mapping):
            hints.setdefault("retry", dict(retry))
        spec = patch.get("spec") if isinstance(patch.get("spec"), Mapping) else {}
        if spec.get("timeout") is not None:
            hints.setdefault("timeout", spec["timeout"])
        resources = spec.get("resources") if isinstance(spec.get("resources"), Mapping) else {}
        if isinstance(resources.get("pool"), str):
            hints.setdefault("pool", resources["pool"])
        loop = patch.get("loop") if isinstance(patch.get("loop"), Mapping) else {}
        loop_spec = loop.get("spec") if isinstance(loop.get("spec"), Mapping) else {}
        if isinstance(loop_spec.get("max_in_flight"), int):
            hints.setdefault("max_in_flight", loop_spec["max_in_flight"])
    return hints


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if text.endswith(suffix):
                try:
                    return float(text[: -len(suffix)]) * scale
                except ValueError:
                    return None
        try:
            return float(text)
        except ValueError:
            return None
    return None


def retry_rule(kind: str, transience: str, config: GuardrailConfig, hint: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """A retry rule in the language's shape, on errors of `kind` (and the hinted HTTP statuses)."""
    hint = hint or {}
    if kind == "rate_limit":
        attempts, delay = 5, 2.0
    else:
        attempts, delay = (4 if transience == "intermittent" else 3), 1.0
    attempts = int(hint.get("max_attempts") or attempts)
    delay = float(hint.get("initial_delay") or hint.get("backoff_seconds") or delay)
    multiplier = float(hint.get("backoff_multiplier") or 2.0)
    attempts = max(2, min(attempts, config.max_attempts))
    delay = max(0.0, min(delay, config.max_delay_s))
    multiplier = max(1.0, min(multiplier, config.max_multiplier))
    max_delay = min(config.max_delay_s, max(delay, 60.0 if kind == "rate_limit" else 30.0))
    condition = f"output.status == 'error' and output.error.kind == '{kind}'"
    statuses = [s for s in hint.get("retry_on_status") or []
                if isinstance(s, int) and not isinstance(s, bool)]
    if statuses and kind in HTTP_KINDS:
        condition = f"output.status == 'error' and (output.http.status in {statuses} or " \
                    f"output.error.kind == '{kind}')"
    then: dict[str, Any] = {"do": "retry", "attempts": attempts, "delay": delay, "max_delay": max_delay}
    if multiplier > 1:
        then.update(backoff="exponential", multiplier=multiplier)
    return {"when": "{{ " + condition + " }}", "then": then}


def _larger_timeout(step: StepInfo | None, transience: str | None, hint: Any,
                    config: GuardrailConfig) -> tuple[float | None, str]:
    current = step.timeout_s if step is not None else None
    if current is None:
        hinted = _seconds(hint)
        if hinted is None:
            return None, "the step has no time limit to raise"
        return min(config.max_timeout_s, max(config.min_timeout_s, hinted)), f"a limit of {hinted:g} s"
    slowest = sorted(step.durations_ms)[math.ceil(0.9 * len(step.durations_ms)) - 1] / 1000.0 \
        if step is not None and step.durations_ms else None
    near = slowest is None or slowest >= 0.5 * current or transience == "permanent"
    if not near:
        return None, (f"the step's successful runs take {slowest:g} s, far below its {current:g} s limit: "
                      "more time would not help a run that hangs")
    target = max(2 * current, (slowest or 0) * 1.5, _seconds(hint) or 0)
    new = min(config.max_timeout_s, max(config.min_timeout_s, target))
    if new <= current:
        return None, f"the limit ({current:g} s) is already at the {config.max_timeout_s:g} s bound"
    return round(new, 3), f"the limit from {current:g} s to {new:g} s"


def _other_pool(step: StepInfo | None, hint: Any, config: GuardrailConfig, pools: Sequence[str]
                ) -> str | None:
    current = step.pool if step is not None else "default"
    known = sorted((set(config.known_pools) | set(pools)) - {current})
    if isinstance(hint, str) and hint in known:
        return hint
    if not known:
        return None
    needs = step.needs if step is not None else {}

    def fits(pool: str) -> bool:
        capacity = config.pool_capacity.get(pool)
        return capacity is None or all(amount <= capacity.get(k, amount) for k, amount in needs.items())

    fitting = [p for p in known if fits(p)]
    if not fitting:
        return None
    return max(fitting, key=lambda p: (sum((config.pool_capacity.get(p) or {}).values()), p == fitting[0]))


def plan(diagnosis: Any, step: StepInfo | None = None, config: GuardrailConfig | None = None,
         pools: Sequence[str] = ()) -> Plan:
    """The drafts a diagnosis leads to (0 or 1) and notes on what was left out."""
    config = config or GuardrailConfig()
    out = Plan()
    kind = field_of(diagnosis, "root_cause_type")
    transience = field_of(diagnosis, "transience")
    name = field_of(diagnosis, "root_cause_step") or field_of(diagnosis, "failed_step")
    path = field_of(diagnosis, "playbook_path") or (step.path if step is not None else None)
    if not kind or not name or not path:
        out.notes.append("nothing failed, or the diagnosis names no step and playbook: nothing to change")
        return out
    if step is not None and not step.exists:
        out.notes.append(f"step '{name}' is no longer in the playbook '{path}'")
        return out
    hints = _hints(diagnosis, name)
    change: dict[str, Any] = {}
    why: list[str] = []
    if kind in ("timeout", "db_timeout"):
        timeout, said = _larger_timeout(step, transience, hints.get("timeout"), config)
        if timeout is not None:
            change["timeout_s"] = timeout
            why.append(f"raise {said}: the step ran out of time")
        else:
            out.notes.append(f"no larger timeout: {said}")
    if kind == "resource_exhausted":
        pool = _other_pool(step, hints.get("pool"), config, pools)
        if pool is not None:
            change["pool"] = pool
            why.append(f"run it on pool '{pool}': it exhausted the resources of "
                       f"'{step.pool if step is not None else 'default'}'")
        else:
            out.notes.append("no other known pool fits the step: add a larger pool (or hardware)")
    if kind == "rate_limit":
        if step is not None and step.has_loop and step.loop_parallel:
            current = step.max_in_flight or 8
            lower = max(1, min(int(hints.get("max_in_flight") or current // 2), current - 1)) \
                if current > 1 else 1
            if lower < current or step.max_in_flight is None:
                change["max_in_flight"] = max(1, min(lower, config.max_in_flight))
                why.append(f"send fewer requests at once (max_in_flight {change['max_in_flight']})")
        elif step is not None:
            out.notes.append("the step has no parallel loop: concurrency is not the lever, backoff is")
    if transience in RETRYABLE_TRANSIENCE and kind not in NEVER_RETRIED:
        change["retry"] = retry_rule(kind, transience, config, hints.get("retry"))
        why.append(f"retry {kind} errors with exponential backoff: the failure is {transience}")
    elif transience == "permanent":
        out.notes.append(f"no retry: the {kind} failure is permanent")
    if not change:
        out.notes.append(f"no configuration change fixes a {transience or 'unclassified'} {kind} failure of "
                         f"step '{name}': it needs a change to the playbook, its code or its data")
        return out
    summary = str(field_of(diagnosis, "summary") or f"step '{name}' failed with {kind}")
    execution_id = field_of(diagnosis, "execution_id")
    evidence = [str(execution_id)] if execution_id else []
    evidence += [str(field_of(e, "event_id")) for e in (field_of(diagnosis, "evidence") or [])[:20]
                 if field_of(e, "event_id")]
    out.drafts.append(ProposalDraft(
        target=Target(path=str(path), step=str(name)), change=OverlayChange.model_validate(change),
        rationale=f"{summary} Proposed: {'; '.join(why)}.", diagnosis=_as_json(diagnosis),
        evidence=evidence, transience=transience if transience in ("transient", "intermittent", "permanent")
        else None))
    return out


def from_diagnosis(diagnosis: Any, step: StepInfo | None = None, config: GuardrailConfig | None = None,
                   pools: Sequence[str] = ()) -> list[ProposalDraft]:
    """The proposal drafts a diagnosis leads to (see `plan` for the reasons of what it leaves out)."""
    return plan(diagnosis, step, config, pools).drafts
