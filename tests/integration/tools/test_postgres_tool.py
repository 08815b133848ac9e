"""The postgres tool runs an attempt's statements in one transaction on a real PostgreSQL and returns the SQL
result shape (spec 3.2)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.protocol.results import ResultEnvelope
from engine.tools.postgres_tool import PostgresTool, _classify

from .conftest import StoredCredentials, free_port, make_call

pytestmark = pytest.mark.anyio


async def sql(dsn: str, config: dict[str, Any], **fields: Any) -> ResultEnvelope:
    return await PostgresTool().run(make_call("postgres", {"connection_string": dsn, **config}, **fields))


def tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        return [r[0] for r in rows.fetchall()]


async def test_the_result_is_the_last_row_set_with_every_statement_as_command_i(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE t (id int, name text);"
                                        "INSERT INTO t VALUES (1, 'a;b'), (2, $$c;d$$);"
                                        "SELECT id, name FROM t ORDER BY id;"
                                        "INSERT INTO t VALUES (3, 'e');"})
    assert env.status == "ok", env.error
    rows = [{"id": 1, "name": "a;b"}, {"id": 2, "name": "c;d"}]
    assert env.data == {
        "rows": rows, "row_count": 2, "columns": ["id", "name"], "statement_count": 4,
        "command_0": {"rows": [], "row_count": 0, "columns": []},
        "command_1": {"rows": [], "row_count": 2, "columns": []},
        "command_2": {"rows": rows, "row_count": 2, "columns": ["id", "name"]},
        "command_3": {"rows": [], "row_count": 1, "columns": []},
    }


async def test_commands_without_rows_give_empty_rows_and_count_the_rows_they_changed(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": ["CREATE TABLE t (x int)", "INSERT INTO t VALUES (1), (2), (3)",
                                         "UPDATE t SET x = 2 WHERE x > 1", "DELETE FROM t WHERE x = 1"]})
    assert (env.data["rows"], env.data["row_count"], env.data["columns"]) == ([], 0, [])
    assert env.data["statement_count"] == 4
    assert [env.data[f"command_{i}"] for i in range(4)] == [
        {"rows": [], "row_count": n, "columns": []} for n in (0, 3, 2, 1)]


async def test_bound_statements_are_counted_one_by_one_too(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE t (x int); INSERT INTO t VALUES (%s), (%s);"
                                        "SELECT x FROM t WHERE x > %s ORDER BY x",
                             "params": [1, 2, 0]})
    assert env.data["statement_count"] == 3 and env.data["command_1"]["row_count"] == 2
    assert env.data["rows"] == env.data["command_2"]["rows"] == [{"x": 1}, {"x": 2}]


async def test_a_function_body_with_semicolons_is_one_statement(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE FUNCTION twice(x int) RETURNS int LANGUAGE plpgsql AS $fn$"
                                        " BEGIN RETURN x * 2; END; $fn$; SELECT twice(21) AS v"})
    assert env.data["rows"] == [{"v": 42}] and env.data["statement_count"] == 2


async def test_named_params_are_bound_never_spliced(pg_dsn: str) -> None:
    evil = "x'); DROP TABLE t; --"
    env = await sql(pg_dsn, {"command": "CREATE TABLE t (name text, n int);"
                                        "INSERT INTO t VALUES (%(name)s, %(n)s);"
                                        "SELECT name, n FROM t WHERE name = %(name)s",
                             "params": {"name": evil, "n": 3}})
    assert env.data["rows"] == [{"name": evil, "n": 3}]
    assert tables(pg_dsn) == ["t"]


async def test_positional_params_are_consumed_in_statement_order(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": ["CREATE TABLE t (a int, b int)", "INSERT INTO t VALUES (%s, %s)",
                                         "SELECT a, b, a + %s AS c FROM t"],
                             "params": [1, 2, 100]})
    assert env.data["rows"] == [{"a": 1, "b": 2, "c": 101}]


async def test_a_failure_rolls_the_whole_attempt_back(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE kept_only_on_success (x int);"
                                        "INSERT INTO kept_only_on_success VALUES (1);"
                                        "SELECT * FROM missing_table"})
    assert env.error is not None and env.error.kind == "sql_syntax" and env.error.pg_code == "42P01"
    assert "statement 3" in env.error.message
    assert tables(pg_dsn) == []


async def test_values_are_converted_to_json_friendly_types(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "SELECT 1.50::numeric AS n, 7::numeric AS whole,"
                                        " DATE '2024-01-02' AS day,"
                                        " TIMESTAMPTZ '2024-01-02 03:04:05+00' AS ts,"
                                        " '\\x0102'::bytea AS raw,"
                                        " '00000000-0000-0000-0000-000000000001'::uuid AS u,"
                                        " '{\"k\": [1, 2.5]}'::jsonb AS j, ARRAY[1, 2] AS arr,"
                                        " interval '90 seconds' AS iv, NULL AS nothing"})
    [row] = env.data["rows"]
    assert row == {"n": 1.5, "whole": 7, "day": "2024-01-02", "ts": row["ts"], "raw": "AQI=",
                   "u": "00000000-0000-0000-0000-000000000001", "j": {"k": [1, 2.5]}, "arr": [1, 2],
                   "iv": 90.0, "nothing": None}
    assert row["ts"].startswith("2024-01-02T") and isinstance(row["ts"], str)


async def test_a_unique_violation_is_db_constraint_with_its_sqlstate_as_pg_code(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE u (x int PRIMARY KEY);"
                                        "INSERT INTO u VALUES (1); INSERT INTO u VALUES (1)"})
    assert env.error is not None
    assert (env.error.kind, env.error.pg_code, env.error.code) == ("db_constraint", "23505", "PG_23505")
    assert env.error.retryable is False and env.error.source == "postgres"
    assert env.error.http_status is None and env.error.status is None


@pytest.mark.parametrize(("command", "pg_code"), [
    ("CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p int REFERENCES p); INSERT INTO c VALUES (9)",
     "23503"),
    ("CREATE TABLE n (x int NOT NULL); INSERT INTO n VALUES (NULL)", "23502"),
    ("CREATE TABLE k (x int CHECK (x > 0)); INSERT INTO k VALUES (-1)", "23514"),
])
async def test_foreign_key_not_null_and_check_violations_are_db_constraint(pg_dsn: str, command: str,
                                                                           pg_code: str) -> None:
    env = await sql(pg_dsn, {"command": command})
    assert env.error is not None
    assert (env.error.kind, env.error.pg_code, env.error.code) == ("db_constraint", pg_code, f"PG_{pg_code}")


async def test_a_syntax_error_is_sql_syntax_with_its_pg_code(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "SELEC 1"})
    assert env.error is not None and env.error.kind == "sql_syntax" and env.error.retryable is False
    assert env.error.pg_code == "42601" and env.error.code == "PG_42601" and env.error.source == "postgres"


async def test_an_undefined_column_is_sql_syntax(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE t (x int); SELECT y FROM t"})
    assert env.error is not None and (env.error.kind, env.error.pg_code) == ("sql_syntax", "42703")


@pytest.mark.parametrize(("error", "kind", "retryable"), [
    (psycopg.errors.DeadlockDetected, "db_deadlock", True),
    (psycopg.errors.SerializationFailure, "db_deadlock", True),
    (psycopg.errors.QueryCanceled, "db_timeout", True),
    (psycopg.errors.LockNotAvailable, "db_timeout", True),
    (psycopg.errors.AdminShutdown, "db_connection", True),
    (psycopg.errors.InvalidPassword, "auth", False),
    (psycopg.errors.UndefinedTable, "sql_syntax", False),
    (psycopg.errors.UniqueViolation, "db_constraint", False),
])
def test_each_sqlstate_class_has_its_kind_and_retryability(error: type[psycopg.Error], kind: str,
                                                           retryable: bool) -> None:
    failure = _classify(error("the server said no"), "statement 2").envelope().error
    assert failure is not None and (failure.kind, failure.retryable) == (kind, retryable)
    assert failure.pg_code == error.sqlstate and failure.code == f"PG_{error.sqlstate}"
    assert failure.message.startswith("statement 2: ")


async def test_bad_input_data_is_a_validation_error(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "SELECT 'abc'::int"})
    assert env.error is not None and env.error.kind == "validation" and env.error.pg_code == "22P02"


async def test_a_credential_with_db_fields_connects(pg_dsn: str) -> None:
    parts = conninfo_to_dict(pg_dsn)
    fields = {"db_host": parts.get("host"), "db_port": parts.get("port", "5432"),
              "db_user": parts.get("user"), "db_password": "unused-secret", "db_name": parts["dbname"]}
    creds = StoredCredentials({"pg_main": ("postgres", fields)})
    env = await PostgresTool().run(make_call("postgres", {"command": "SELECT current_database() AS db",
                                                          "auth": "pg_main"}, credentials=creds))
    assert env.data["rows"] == [{"db": parts["dbname"]}]


async def test_a_missing_credential_is_missing_credential() -> None:
    env = await PostgresTool().run(make_call("postgres", {"command": "SELECT 1", "auth": "pg_nowhere"}))
    assert env.error is not None and env.error.kind == "missing_credential"
    assert "pg_nowhere" in env.error.message


async def test_an_unknown_role_is_an_auth_error(pg_dsn: str) -> None:
    dsn = make_conninfo(pg_dsn, user="no_such_role_here")
    env = await sql(dsn, {"command": "SELECT 1"})
    assert env.error is not None and env.error.kind == "auth", env.error


async def test_a_refused_connection_is_a_retryable_db_connection_error() -> None:
    dsn = f"host=127.0.0.1 port={free_port()} dbname=x user=x password=hunter2-secret"
    env = await sql(dsn, {"command": "SELECT 1"}, timeout_s=10)
    assert env.error is not None and env.error.kind == "db_connection" and env.error.retryable is True
    assert "hunter2-secret" not in env.model_dump_json()


async def test_a_slow_statement_is_a_retryable_db_timeout(pg_dsn: str) -> None:
    started = time.perf_counter()
    env = await sql(pg_dsn, {"command": "SELECT pg_sleep(10)"}, timeout_s=0.5)
    assert env.error is not None and env.error.kind == "db_timeout" and env.error.pg_code == "57014"
    assert env.error.retryable is True
    assert time.perf_counter() - started < 4
