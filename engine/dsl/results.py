"""Step results as templates see them (spec section 5): plain JSON data with a few extra handles.

A SQL result is a mapping with its own `rows`, `row_count`, `columns`, `statement_count` and
`command_<i>` (spec 3.2); a loop result is the ordered item results with `.results` and `.stats`; a
pipeline result also has `.results` by task; a mapping result falls back to `result.data.x` when `x` is
not one of its own keys. A list result still answers `.rows`, `.row_count`, `.columns` and
`.statement_count`: revision 1 recorded SQL results as lists, and those executions replay unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ResultDict(dict[str, Any]):
    """A mapping result; templates fall back to its `data` for keys it does not have."""

    results: Mapping[str, Any] | None = None
    stats: Mapping[str, Any] | None = None

    def fallback(self, key: str) -> tuple[bool, Any]:
        data = dict.get(self, "data")
        if isinstance(data, Mapping) and key in data:
            return True, data[key]
        if isinstance(data, ResultDict):  # `output.x` → `output.data.x` → the http body's x (spec 7)
            found, value = data.fallback(key)
            if found:
                return True, value
        if key == "data" and "data" not in self:  # `{{ step.data.x }}` reads x (NoETL's envelope)
            return True, self
        if key == "body" and "status_code" in self and "data" in self:  # an http result stored once
            return True, dict.get(self, "data")
        if key == "results" and self.results is not None:
            return True, self.results
        if key == "stats" and self.stats is not None:
            return True, self.stats
        return False, None


class ResultList(list[Any]):
    """A list result (rows of a query, or the items of a loop) with its handles as attributes."""

    def __init__(self, items: Sequence[Any] = (), *, columns: Sequence[str] | None = None,
                 statement_count: int | None = None, results: Any = None,
                 stats: Mapping[str, Any] | None = None) -> None:
        super().__init__(items)
        self.rows = self
        self.row_count = len(self)
        self.columns = list(columns) if columns is not None else _columns_of(self)
        self.statement_count = statement_count
        self.results = self if results is None else results
        self.stats = stats


def _columns_of(rows: Sequence[Any]) -> list[str]:
    return list(rows[0].keys()) if rows and isinstance(rows[0], Mapping) else []


def wrap_result(value: Any, *, columns: Sequence[str] | None = None,
                statement_count: int | None = None, task_results: Mapping[str, Any] | None = None,
                stats: Mapping[str, Any] | None = None) -> Any:
    """The handle templates get for a step's result value."""
    if task_results:  # each task's result is a handle too (an http result's `body` reads its `data`)
        task_results = {name: wrap_result(result) for name, result in task_results.items()}
    if isinstance(value, Mapping):
        out = ResultDict(value)
        out.results = task_results
        out.stats = stats
        return out
    if isinstance(value, list):
        return ResultList(value, columns=columns, statement_count=statement_count,
                          results=task_results, stats=stats)
    return value
