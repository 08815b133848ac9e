"""The render context of spec section 13, assembled from lowest to highest precedence."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Collection, Iterator, Mapping, MutableMapping
from typing import Any

from engine.dsl.results import ResultDict
from engine.dsl.templates import not_run


class RenderContext(MutableMapping[str, Any]):
    """Every name a template may read, in layers; a step's result is looked up only when read.

    A playbook of N steps binds N names, and the renderer reads the few a template names: building the
    whole dict for every decision made each step cost O(N) (a 1,000-step chain spent most of its
    orchestrator time there). Names set on the context go to the top layer."""

    __slots__ = ("_high", "_low", "_results", "_step_names")

    def __init__(self, low: dict[str, Any], step_names: Collection[str], results: Mapping[str, Any],
                 high: dict[str, Any]) -> None:
        self._low = low
        self._step_names = step_names  # a set or a mapping: `in` must be cheap
        self._results = results
        self._high = high

    def __getitem__(self, key: str) -> Any:
        if key in self._high:
            return self._high[key]
        if key in self._step_names:
            return self._results[key] if key in self._results else not_run(key)
        if key in self._low:
            return self._low[key]
        return self._results[key]

    def __contains__(self, key: object) -> bool:
        return (key in self._high or key in self._step_names or key in self._low
                or key in self._results)

    def __setitem__(self, key: str, value: Any) -> None:
        self._high[key] = value

    def __delitem__(self, key: str) -> None:
        del self._high[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(itertools.chain(self._low, self._step_names, self._results, self._high)))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def build_context(
    *,
    workload: Mapping[str, Any] | None = None,
    ctx: Mapping[str, Any] | None = None,
    step_names: Collection[str] = (),
    results: Mapping[str, Any] | None = None,
    arc_args: Mapping[str, Any] | None = None,
    iterator: str | None = None,
    iter_vars: Mapping[str, Any] | None = None,
    input: Mapping[str, Any] | None = None,
    output: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
    execution_id: int | str | None = None,
    keychain: Mapping[str, Any] | None = None,
) -> RenderContext:
    """Every name a template may read.

    Precedence, lowest first: workload keys at top level, `workload`, `ctx`, the names written by
    the arc that led here (NoETL `args`), step results by name (a step without a result is null),
    `iter` and the bare iterator name (and `loop_index`), `input`, `output`, `event`,
    `execution_id`, `job`, `keychain`. Results of names that are not steps (a pipeline's tasks) come
    below all but the top layer. `step_names` should be a set or a mapping (membership is tested).
    `execution_id` is given as templates see it: a number (engine.protocol.ids.template_value).
    """
    low: dict[str, Any] = {}
    workload = dict(workload or {})
    low.update(workload)
    low["workload"] = workload
    low["ctx"] = dict(ctx or {})
    low.update(arc_args or {})
    high: dict[str, Any] = {}
    if iter_vars is not None:
        iter_scope = dict(iter_vars)
        high["iter"] = iter_scope
        if iterator and iterator in iter_scope:
            high[iterator] = iter_scope[iterator]
        if "_index" in iter_scope:
            high["loop_index"] = iter_scope["_index"]
    if input is not None:
        high["input"] = dict(input)
    if output is not None:
        out = ResultDict(output)  # a key the envelope lacks is read from its data (spec 7)
        out.setdefault("response", out.get("data"))
        high["output"] = out
    if event is not None:
        high["event"] = dict(event)
    if execution_id is not None:
        high["execution_id"] = execution_id
        high["job"] = {"uuid": execution_id, "execution_id": execution_id, "id": execution_id}
    if iterator == "job" and iter_vars is not None and "job" in iter_vars:
        high["job"] = iter_vars["job"]  # a loop's own `iterator: job` (spec 6.1) wins over NoETL's `job`
    high["keychain"] = dict(keychain or {})
    if not isinstance(step_names, (set, frozenset, Mapping)):
        step_names = dict.fromkeys(step_names)
    return RenderContext(low, step_names, results if results is not None else {}, high)


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
