"""The duckdb tool runs statements in order and returns the SQL result shape (spec 3.2): the rows of the last
statement that returned rows, and every statement's own rows and count as `command_<i>`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.results import ResultEnvelope
from engine.tools.duckdb_tool import DuckdbTool

from .conftest import make_call

pytestmark = pytest.mark.anyio


async def sql(config: dict[str, Any], **fields: Any) -> ResultEnvelope:
    return await DuckdbTool().run(make_call("duckdb", config, **fields))


async def test_the_result_is_the_last_row_set_with_every_statement_as_command_i() -> None:
    env = await sql({"command": "CREATE TABLE t (id INTEGER, name VARCHAR);"
                                "INSERT INTO t VALUES (1, 'a;b'), (2, $$c;d$$);"
                                "SELECT id, name FROM t ORDER BY id;"
                                "INSERT INTO t VALUES (3, 'e');"})
    assert env.status == "ok"
    rows = [{"id": 1, "name": "a;b"}, {"id": 2, "name": "c;d"}]
    assert env.data == {
        "rows": rows, "row_count": 2, "columns": ["id", "name"], "statement_count": 4,
        "command_0": {"rows": [], "row_count": 0, "columns": []},
        "command_1": {"rows": [], "row_count": 2, "columns": []},
        "command_2": {"rows": rows, "row_count": 2, "columns": ["id", "name"]},
        "command_3": {"rows": [], "row_count": 1, "columns": []},
    }


async def test_statements_without_rows_give_empty_rows_and_count_the_rows_they_changed() -> None:
    env = await sql({"command": ["CREATE TABLE t (x INT)", "INSERT INTO t VALUES (1), (2)",
                                 "UPDATE t SET x = x + 1", "DELETE FROM t WHERE x = 2", "DROP TABLE t"]})
    assert (env.data["rows"], env.data["row_count"], env.data["columns"]) == ([], 0, [])
    assert env.data["statement_count"] == 5
    assert [env.data[f"command_{i}"]["row_count"] for i in range(5)] == [0, 2, 2, 1, 0]
    assert all(env.data[f"command_{i}"]["rows"] == [] for i in range(5))


async def test_a_select_that_matches_nothing_is_still_the_last_row_set() -> None:
    env = await sql({"command": "SELECT 1 AS a; SELECT 2 AS b WHERE false; CREATE TABLE t (x INT)"})
    assert (env.data["rows"], env.data["row_count"], env.data["columns"]) == ([], 0, ["b"])
    assert env.data["command_0"] == {"rows": [{"a": 1}], "row_count": 1, "columns": ["a"]}


async def test_returning_rows_count_as_rows() -> None:
    env = await sql({"command": "CREATE TABLE t (x INT); INSERT INTO t VALUES (5), (6) RETURNING x"})
    assert env.data["rows"] == [{"x": 5}, {"x": 6}] and env.data["command_1"]["row_count"] == 2


async def test_named_params_are_bound_per_statement() -> None:
    env = await sql({"command": "CREATE TABLE t (name VARCHAR, n INT);"
                                "INSERT INTO t VALUES ($name, $n);"
                                "SELECT name, n FROM t WHERE name = $name",
                     "params": {"name": "x'); DROP TABLE t; --", "n": 3}})
    assert env.data["rows"] == [{"name": "x'); DROP TABLE t; --", "n": 3}]


async def test_positional_params_are_consumed_in_statement_order() -> None:
    env = await sql({"command": "CREATE TABLE t (a INT, b INT); INSERT INTO t VALUES (?, ?);"
                                "SELECT a, b, a + ? AS c FROM t",
                     "params": [1, 2, 100]})
    assert env.data["rows"] == [{"a": 1, "b": 2, "c": 101}]


async def test_missing_or_extra_params_are_validation_errors() -> None:
    missing = await sql({"command": "SELECT $x AS x", "params": {"y": 1}})
    assert missing.error is not None and missing.error.kind == "validation" and "x" in missing.error.message
    extra = await sql({"command": "SELECT ? AS x", "params": [1, 2]})
    assert extra.error is not None and extra.error.kind == "validation"


async def test_values_are_converted_to_json_friendly_types() -> None:
    env = await sql({"command": "SELECT 1.50::DECIMAL(10,2) AS d, 7::DECIMAL(10,2) AS whole,"
                                " DATE '2024-01-02' AS day, TIMESTAMP '2024-01-02 03:04:05' AS ts,"
                                " '\\x01\\x02'::BLOB AS raw,"
                                " '00000000-0000-0000-0000-000000000001'::UUID AS u,"
                                " [1, 2] AS l, {'k': 'v'} AS s, INTERVAL 90 SECOND AS iv, NULL AS nothing"})
    assert env.data["rows"] == [{"d": 1.5, "whole": 7, "day": "2024-01-02", "ts": "2024-01-02T03:04:05",
                         "raw": "AQI=", "u": "00000000-0000-0000-0000-000000000001", "l": [1, 2],
                         "s": {"k": "v"}, "iv": 90.0, "nothing": None}]


async def test_a_database_file_keeps_its_data_between_calls(tmp_path: Path) -> None:
    database = str(tmp_path / "store.duckdb")
    await sql({"command": "CREATE TABLE kept AS SELECT 42 AS v", "database": database})
    env = await sql({"command": "SELECT v FROM kept", "database": database})
    assert env.data["rows"] == [{"v": 42}]


@pytest.mark.parametrize(("command", "kind"), [
    ("SELEC 1", "sql_syntax"),
    ("SELECT * FROM no_such_table", "sql_syntax"),
    ("CREATE TABLE t (x INT PRIMARY KEY); INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)",
     "db_constraint"),
    ("SELECT 'abc'::INTEGER", "validation"),
])
async def test_failures_are_classified(command: str, kind: str) -> None:
    env = await sql({"command": command})
    assert env.status == "error" and env.error is not None
    assert env.error.kind == kind and env.error.retryable is False and env.error.type


async def test_a_file_that_cannot_be_parsed_is_a_parse_error_from_duckdb(tmp_path: Path) -> None:
    bad = tmp_path / "orders.json"
    bad.write_text('{"id": 1,, }', encoding="utf-8")
    env = await sql({"command": f"SELECT * FROM read_json('{bad}')"})
    assert env.error is not None and env.error.kind == "parse" and env.error.retryable is False
    assert env.error.source == "duckdb" and "orders.json" in env.error.message


async def test_a_long_query_is_interrupted_at_the_time_limit() -> None:
    started = time.perf_counter()
    env = await sql({"command": "SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3"},
                    timeout_s=0.5)
    assert env.error is not None and env.error.kind == "timeout"
    assert time.perf_counter() - started < 5


async def test_a_script_file_is_read(tmp_path: Path) -> None:
    script = tmp_path / "q.sql"
    script.write_text("-- a comment; with a semicolon\nSELECT 'x;y' AS v;\n")
    env = await sql({"script": {"uri": script.as_uri()}})
    assert env.data["rows"] == [{"v": "x;y"}] and env.data["statement_count"] == 1


async def test_auth_for_attached_sources_is_refused_clearly() -> None:
    env = await sql({"command": "SELECT 1", "auth": "pg"})
    assert env.error is not None and env.error.kind == "validation" and "auth" in env.error.message
