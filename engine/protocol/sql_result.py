"""The SQL tools' result shape (spec 3.2): built by every SQL tool, recognised by the readers of results.

`{rows, row_count, columns, statement_count, command_0: {rows, row_count, columns}, command_1: …}`:
`command_<i>` is the i-th statement (0-based; `rows: []` and `columns: []` when it returned no row set,
`row_count` the rows returned or affected); the top level is the LAST statement that returned a row set
(`rows: []`, `columns: []`, `row_count: 0` when none did). A loop iterates such a result's `rows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

COMMAND_PREFIX = "command_"


@dataclass(frozen=True, slots=True)
class StatementResult:
    """One statement's outcome; `columns` is None when it returned no row set."""

    columns: Sequence[str] | None = None
    rows: Sequence[Mapping[str, Any]] = ()
    affected: int = 0  # rows inserted, updated or deleted, as the driver reports them

    def as_dict(self) -> dict[str, Any]:
        if self.columns is None:
            return {"rows": [], "row_count": max(self.affected, 0), "columns": []}
        return {"rows": list(self.rows), "row_count": len(self.rows), "columns": list(self.columns)}


def sql_result(statements: Sequence[StatementResult]) -> dict[str, Any]:
    """The result of the statements of one call, in the order they ran."""
    commands = [s.as_dict() for s in statements]
    last = next((c for s, c in zip(reversed(statements), reversed(commands), strict=True)
                 if s.columns is not None), None)
    result: dict[str, Any] = {
        "rows": last["rows"] if last else [],  # the same list as its command's: one copy in memory
        "row_count": last["row_count"] if last else 0,
        "columns": last["columns"] if last else [],
        "statement_count": len(commands),
    }
    result.update((f"{COMMAND_PREFIX}{i}", command) for i, command in enumerate(commands))
    return result


def is_sql_result(value: Any) -> bool:
    """Whether `value` has the SQL result shape (whatever tool, or code, produced it)."""
    return (isinstance(value, Mapping) and isinstance(value.get("rows"), list)
            and isinstance(value.get("columns"), list) and _is_count(value.get("row_count"))
            and _is_count(value.get("statement_count")))


def loop_items(value: Any) -> Any:
    """What a loop's `in` iterates: a SQL result's rows, any other value as it is."""
    return value["rows"] if is_sql_result(value) else value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
