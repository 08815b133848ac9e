"""The snowflake tool's statement loop builds the shared SQL result shape (spec 3.2). Its connector is not
installed here, so the loop runs over SQLite behind the connector's DB-API surface (connect, cursor as a
context manager, `execute(text, args, timeout=)`, errors module)."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace
from typing import Any

from engine.tools.snowflake_tool import _execute
from engine.tools.sql_split import split_sql


class _Cursor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._cursor = conn.cursor()

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def execute(self, text: str, args: Any = None, timeout: int | None = None) -> None:
        self._cursor.execute(text, args or ())

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


class _Connection:
    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:")

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn)

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()


SQLITE_CONNECTOR = SimpleNamespace(connect=lambda autocommit=False, **settings: _Connection(),
                                   errors=SimpleNamespace(Error=sqlite3.Error))


def test_snowflake_statements_give_the_last_row_set_and_every_statement_as_command_i() -> None:
    statements = split_sql("CREATE TABLE t (id INTEGER, name TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');"
                           "SELECT id, name FROM t ORDER BY id; UPDATE t SET name = 'c' WHERE id = 2",
                           "snowflake")
    envelope = _execute(SQLITE_CONNECTOR, {"account": "x"}, statements, None, None)  # type: ignore[arg-type]
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert envelope.status == "ok"
    assert envelope.data == {
        "rows": rows, "row_count": 2, "columns": ["id", "name"], "statement_count": 4,
        "command_0": {"rows": [], "row_count": 0, "columns": []},
        "command_1": {"rows": [], "row_count": 2, "columns": []},
        "command_2": {"rows": rows, "row_count": 2, "columns": ["id", "name"]},
        "command_3": {"rows": [], "row_count": 1, "columns": []},
    }
