"""Contracts of tools and workbook tasks (spec 3): `assert: {expects, returns}`. PURE.

`expects` names what the tool's rendered input must hold (present and not null), checked before the
tool runs; `returns` names the keys its result must have, checked after it succeeded. A name is a key,
or a dotted path through mappings (`customer.id`) when no key has the whole name. An http result's
body keys count as its keys (they read the same in templates, spec 3). A breach is an error result of
kind `contract` (never retryable) whose message names every missing name in backticks and the place:
the diagnosis reads them from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.protocol.results import ResultEnvelope, is_http_result

EXPECTS_CODE = "CONTRACT_EXPECTS"
RETURNS_CODE = "CONTRACT_RETURNS"
_ABSENT = object()


def contract_of(holder: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """(expects, returns) of a task or workbook-task mapping with an `assert` (empty when none)."""
    raw = (holder or {}).get("assert")
    if not isinstance(raw, Mapping):
        return [], []
    return _names(raw.get("expects")), _names(raw.get("returns"))


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return []


def lookup(value: Any, name: str) -> Any:
    """The value `name` names in a mapping (a key, else a dotted path); `_ABSENT` when there is none."""
    if not isinstance(value, Mapping):
        return _ABSENT
    if name in value:
        return value[name]
    node: Any = value
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def missing_inputs(expects: Sequence[str], tool_input: Mapping[str, Any]) -> list[str]:
    """The names of `expects` that the input lacks or holds as null."""
    out = []
    for name in expects:
        found = lookup(tool_input, name)
        if found is _ABSENT or found is None:
            out.append(name)
    return out


def missing_returns(returns: Sequence[str], result: Any) -> list[str]:
    """The names of `returns` that are not keys of the result (nor of an http result's body)."""
    body = result.get("data") if is_http_result(result) else None
    return [name for name in returns
            if lookup(result, name) is _ABSENT and lookup(body, name) is _ABSENT]


def _place(step: str, task: str | None, workbook: str | None) -> str:
    if workbook:
        return f"workbook task '{workbook}' (called by step '{step}')"
    if task and task != step:
        return f"task '{task}' of step '{step}'"
    return f"step '{step}'"


def _listed(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def expects_breach(missing: Sequence[str], *, step: str, task: str | None = None,
                   workbook: str | None = None) -> ResultEnvelope:
    """The error result of an input that lacks what `assert.expects` names (the tool did not run)."""
    place = _place(step, task, workbook)
    noun = "input lacks" if len(missing) == 1 else "input lacks each of"
    return ResultEnvelope.fail(
        "contract", f"{place} breaks its contract: its {noun} {_listed(missing)} (missing or null; "
                    "named in assert.expects), so it did not run", retryable=False, code=EXPECTS_CODE,
        contract={"side": "expects", "missing": list(missing), "step": step, "task": task,
                  "workbook": workbook})


def returns_breach(missing: Sequence[str], result: Any, *, step: str, task: str | None = None,
                   workbook: str | None = None) -> ResultEnvelope:
    """The error result of a result that lacks a key `assert.returns` names. The result itself is not
    kept (it may be large); the message says which keys it has."""
    place = _place(step, task, workbook)
    if isinstance(result, Mapping):
        keys = [str(k) for k in result][:12]
        shape = f"; it has {', '.join(keys)}{', …' if len(result) > 12 else ''}" if keys else \
            "; it is an empty mapping"
    else:
        shape = f"; it returned {_shape(result)}, not a mapping"
    return ResultEnvelope.fail(
        "contract", f"{place} breaks its contract: its result lacks {_listed(missing)} (named in "
                    f"assert.returns){shape}", retryable=False, code=RETURNS_CODE,
        contract={"side": "returns", "missing": list(missing), "step": step, "task": task,
                  "workbook": workbook})


def _shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def check_expects(holder: Mapping[str, Any] | None, tool_input: Mapping[str, Any], *, step: str,
                  task: str | None = None, workbook: str | None = None) -> ResultEnvelope | None:
    """The breach of `holder`'s `assert.expects` by this input, or None."""
    expects, _ = contract_of(holder)
    missing = missing_inputs(expects, tool_input) if expects else []
    return expects_breach(missing, step=step, task=task, workbook=workbook) if missing else None


def check_returns(holder: Mapping[str, Any] | None, envelope: ResultEnvelope, *, step: str,
                  task: str | None = None, workbook: str | None = None,
                  data: Any = _ABSENT) -> ResultEnvelope | None:
    """The breach of `holder`'s `assert.returns` by a successful result, or None (an error passes
    through: its own message says more). `data` overrides the envelope's data (a resolved reference)."""
    _, returns = contract_of(holder)
    if not returns or envelope.status != "ok":
        return None
    result = envelope.data if data is _ABSENT else data
    missing = missing_returns(returns, result)
    if not missing:
        return None
    return returns_breach(missing, result, step=step, task=task, workbook=workbook)
