"""Approved configuration changes laid over a playbook's steps (spec 11: policies may override a step's
resources, `spec.timeout` and retry rules without editing the playbook). PURE: no I/O, no clock.

The overlay of one step is a JSON object with any of these fields (`OVERLAY_FIELDS`):

- `retry`: a policy rule in the language's own shape, `{when, then: {do: retry, attempts, backoff, delay,
  multiplier, max_delay, jitter}}`. It goes FIRST in the rules of every task of the step, so it decides
  whenever its `when` holds; the task's own rules still apply to what it does not match.
- `timeout_s`: the step's `spec.timeout`, and the `timeout` of each of its tasks that sets one (the worker
  applies the smaller of the two, so an overlay that raises the limit must raise both).
- `pool`, `prefer`, `require`: `spec.resources.pool` / `.prefer` / `.require`.
- `max_in_flight`: `loop.spec.max_in_flight` (a loop step only).

`apply_overlays(playbook, {step: overlay})` returns the patched playbook and notes; the catalog's text is
never changed. What does not apply (an unknown step or field, `max_in_flight` on a step without a loop, a
patched playbook that would not validate) is skipped and named in the notes, never raised: the engine
does not fail an execution over an overlay. The engine calls this when it compiles an execution's net from
the overlays carried by its `execution.started` event, so replaying the log rebuilds the same net.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from engine.dsl.model import Playbook

OVERLAY_FIELDS: tuple[str, ...] = ("retry", "timeout_s", "pool", "prefer", "require", "max_in_flight")
_TIMED_KINDS = frozenset({"python", "http", "shell", "playbook"})


def apply_overlays(playbook: Playbook, overlays: Mapping[str, Mapping[str, Any]] | None
                   ) -> tuple[Playbook, list[str]]:
    """The playbook with each step's overlay applied, and notes on what was skipped."""
    steps = {name: overlay for name, overlay in (overlays or {}).items() if overlay}
    if not steps:
        return playbook, []
    notes: list[str] = []
    data = playbook.model_dump(by_alias=True, exclude_unset=True)
    known = {step["step"] for step in data["workflow"]}
    for name in sorted(set(steps) - known):
        notes.append(f"overlay of step '{name}' skipped: the playbook has no such step")
    for step in data["workflow"]:
        overlay = steps.get(step["step"])
        if overlay:
            notes.extend(patch_step(step, overlay))
    try:
        return Playbook.model_validate(data), notes
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return playbook, [*notes, f"overlays not applied: the patched playbook does not validate "
                                  f"({where}: {first.get('msg')})"]


def patch_step(step: dict[str, Any], overlay: Mapping[str, Any]) -> list[str]:
    """Apply one overlay to the canonical data of one step, in place; the notes of what was skipped."""
    name = step.get("step")
    notes: list[str] = []
    for key in sorted(set(overlay) - set(OVERLAY_FIELDS)):
        notes.append(f"overlay field '{key}' of step '{name}' skipped: "
                     f"not one of {', '.join(OVERLAY_FIELDS)}")
    spec = step.setdefault("spec", {})
    if overlay.get("retry") is not None:
        rule = copy.deepcopy(dict(overlay["retry"]))
        for task in step.get("tool") or []:
            task_spec = task.setdefault("spec", {})
            policy = task_spec.setdefault("policy", {})
            policy["rules"] = [copy.deepcopy(rule), *(policy.get("rules") or [])]
    if overlay.get("timeout_s") is not None:
        timeout = float(overlay["timeout_s"])
        spec["timeout"] = timeout
        for task in step.get("tool") or []:
            if task.get("kind") in _TIMED_KINDS and task.get("timeout") is not None:
                task["timeout"] = timeout
    for key in ("pool", "prefer", "require"):
        if overlay.get(key) is not None:
            resources = spec.setdefault("resources", {})
            resources[key] = copy.deepcopy(overlay[key])
    if overlay.get("max_in_flight") is not None:
        loop = step.get("loop")
        if loop is None:
            notes.append(f"overlay field 'max_in_flight' of step '{name}' skipped: the step has no loop")
        else:
            loop.setdefault("spec", {})["max_in_flight"] = int(overlay["max_in_flight"])
    return notes
