"""Whether an upstream step's output explains a downstream step's data error: PURE.

`data_problem(step, error, kind)` says what is wrong with `step`'s output given the error its reader
raised (null, empty, an error object, text where structure was expected, null fields, records lacking
the key a KeyError names, values that do not parse), or None when the output does not explain it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agents.diagnosis.facts import ErrorFact, StepFacts
from engine.protocol.sql_result import is_sql_result

DATA_ERRORS = frozenset({"KeyError", "IndexError", "TypeError", "AttributeError", "ValueError",
                         "ZeroDivisionError", "StopIteration"})
_NOT_NULL = re.compile(r'null value in column "([^"]+)"|NOT NULL constraint failed: (?:\w+\.)?(\w+)',
                       re.IGNORECASE)
_EXPRESSION = re.compile(r"`([^`]+)`")


@dataclass(frozen=True, slots=True)
class DataProblem:
    step: str
    problem: str  # what is wrong with its output, in words
    strong: bool  # the problem explains this very error (not just "the data looks odd")
    shape: str  # null | empty | error | text | nulls | missing_key | inconsistent | other


def payload_of(result: Any) -> Any:
    """The data of a result: an http tool's body, a SQL tool's rows (spec 3.2), else the result itself."""
    if isinstance(result, dict) and "status_code" in result and "data" in result:
        return result["data"]
    if is_sql_result(result):
        return result["rows"]
    return result


def payload_path(result: Any) -> str:
    """Where `payload_of` reads in a result, as a template suffix: `.rows` for a SQL result, else ''."""
    return ".rows" if is_sql_result(result) else ""


def describe_result(result: Any) -> str:
    """What a step returned, in words: a SQL result by its rows, anything else by its data."""
    if is_sql_result(result):
        count = len(result["rows"])
        return "no rows" if not count else f"{count} row{'s' if count != 1 else ''}"
    return describe(payload_of(result))


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "an empty string" if not value else f"text ({value[:60]!r})"
    if isinstance(value, list):
        return "an empty list" if not value else f"a list of {len(value)}"
    if isinstance(value, dict):
        if not value:
            return "an empty object"
        empty = [str(k) for k, v in value.items() if isinstance(v, (list, dict, str)) and not v]
        if empty:
            names = ", ".join(f"`{k}`" for k in empty[:3])
            return f"an object whose {names} {'is' if len(empty) == 1 else 'are'} empty"
        keys = ", ".join(list(map(str, value))[:6])
        return f"an object with keys {keys}"
    return f"{type(value).__name__} {value!r}"


def _records(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        for key in ("rows", "items", "data", "results", "records"):
            if isinstance(value.get(key), list):
                return [r for r in value[key] if isinstance(r, dict)]
        return [value]
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict)]
    return []


def has_none(value: Any, depth: int = 0) -> bool:
    if value is None:
        return True
    if depth > 3:
        return False
    if isinstance(value, dict):
        return any(has_none(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(has_none(v, depth + 1) for v in value[:1000])
    return False


def _has_empty(value: Any, depth: int = 0) -> bool:
    if isinstance(value, (list, dict, str)) and not value:
        return True
    if depth > 2:
        return False
    if isinstance(value, dict):
        return any(_has_empty(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_has_empty(v, depth + 1) for v in value[:1000])
    return False


def degenerate(value: Any) -> str | None:
    """The shape class of an output no reader can use, else None."""
    if value is None:
        return "null"
    if isinstance(value, (list, dict, str)) and not value:
        return "empty"
    if isinstance(value, dict) and (value.get("status") == "error" or value.get("error")):
        return "error"
    return None


def data_problem(step: StepFacts, error: ErrorFact, kind: str) -> DataProblem | None:
    """What is wrong with `step`'s output given the error its reader raised, or None."""
    if step.status != "succeeded":
        return None
    value = payload_of(step.result)
    shape = degenerate(value)
    what = describe_result(step.result)
    etype = (error.type or "").split(".")[-1]
    message = error.message or ""
    if kind == "undefined_variable":
        expression = expression_of(message) or ""
        root = re.split(r"[.\[]", expression, maxsplit=1)[0]
        if root == step.name or shape:
            return DataProblem(step.name, f"returned {what}, so `{expression}` cannot be read",
                               strong=root == step.name or shape is not None, shape=shape or "missing_key")
        return None
    if kind == "db_constraint":
        match = _NOT_NULL.search(message)
        if match:
            column = match.group(1) or match.group(2)
            records = _records(value)
            if any(r.get(column) is None for r in records):
                return DataProblem(step.name, f"returned records whose `{column}` is null or missing",
                                   strong=True, shape="nulls")
        return None
    if kind != "python_exception" or etype not in DATA_ERRORS:
        return None
    if etype == "KeyError":
        key = message.strip().strip("'\"")
        records = _records(value)
        if records:
            having = sum(1 for r in records if key in r)
            if 0 < having < len(records):
                return DataProblem(step.name, f"returned {len(records)} records of which "
                                              f"{len(records) - having} lack the key '{key}'",
                                   strong=True, shape="inconsistent")
            if having == 0:
                keys = ", ".join(sorted({str(k) for r in records for k in r})[:8])
                return DataProblem(step.name, f"returned records without the key '{key}' (keys: {keys})",
                                   strong=False, shape="missing_key")
    emptiness = etype in ("IndexError", "StopIteration", "ZeroDivisionError")
    if emptiness and (shape == "empty" or _has_empty(value)):
        return DataProblem(step.name, f"returned {what}", strong=True, shape="empty")
    if "NoneType" in message and (shape == "null" or has_none(value)):
        return DataProblem(step.name, f"returned {what} containing null values" if shape is None
                           else "returned null", strong=True, shape="nulls" if shape is None else "null")
    if ("'str'" in message or "string indices" in message) and isinstance(value, str):
        return DataProblem(step.name, f"returned {what} where structured data was expected", strong=True,
                           shape="text")
    if etype == "ValueError" and isinstance(value, (str, list, dict)) and re.search(
            r"invalid literal|could not convert|Expecting value", message):
        return DataProblem(step.name, f"returned {what} with values that do not parse", strong=False,
                           shape="other")
    if shape is not None:
        return DataProblem(step.name, f"returned {what}", strong=False, shape=shape)
    return None


def expression_of(message: str) -> str | None:
    match = _EXPRESSION.search(message)
    return match.group(1) if match else None
