"""The render context of spec section 13, assembled from lowest to highest precedence."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from engine.dsl.templates import not_run


def build_context(
    *,
    workload: Mapping[str, Any] | None = None,
    ctx: Mapping[str, Any] | None = None,
    step_names: Iterable[str] = (),
    results: Mapping[str, Any] | None = None,
    arc_args: Mapping[str, Any] | None = None,
    iterator: str | None = None,
    iter_vars: Mapping[str, Any] | None = None,
    input: Mapping[str, Any] | None = None,
    output: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    execution_id: str | None = None,
    keychain: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every name a template may read.

    Precedence, lowest first: workload keys at top level, `workload`, `ctx`, the names written by
    the arc that led here (NoETL `args`), step results by name (a step without a result is null),
    `iter` and the bare iterator name (and `loop_index`), `input`, `output`, `event`,
    `execution_id`, `job`, `keychain`.
    """
    context: dict[str, Any] = {}
    workload = dict(workload or {})
    context.update(workload)
    context["workload"] = workload
    context["ctx"] = dict(ctx or {})
    context.update(arc_args or {})
    results = results or {}
    for name in step_names:
        context[name] = results[name] if name in results else not_run(name)
    for name, value in results.items():
        context.setdefault(name, value)
    if iter_vars is not None:
        iter_scope = dict(iter_vars)
        context["iter"] = iter_scope
        if iterator and iterator in iter_scope:
            context[iterator] = iter_scope[iterator]
        if "_index" in iter_scope:
            context["loop_index"] = iter_scope["_index"]
    if input is not None:
        context["input"] = dict(input)
    if output is not None:
        out = dict(output)
        out.setdefault("response", out.get("data"))
        context["output"] = out
    if event is not None:
        context["event"] = dict(event)
    if execution_id is not None:
        context["execution_id"] = execution_id
        context["job"] = {"uuid": execution_id, "execution_id": execution_id, "id": execution_id}
    context["keychain"] = dict(keychain or {})
    return context


def merge_payload(workload: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """An execution's workload before rendering: a copy of the playbook's, the payload deep-merged over it
    (mappings merge key by key; anything else replaces)."""
    return _deep_merge(copy.deepcopy(dict(workload)), payload)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base
