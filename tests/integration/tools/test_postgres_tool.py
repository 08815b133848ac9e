"""The postgres tool runs an attempt's statements in one transaction on a real PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.protocol.results import ResultEnvelope
from engine.tools.postgres_tool import PostgresTool

from .conftest import StoredCredentials, free_port, make_call

pytestmark = pytest.mark.anyio


async def sql(dsn: str, config: dict[str, Any], **fields: Any) -> ResultEnvelope:
    return await PostgresTool().run(make_call("postgres", {"connection_string": dsn, **config}, **fields))


def tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        return [r[0] for r in rows.fetchall()]


async def test_the_rows_of_the_last_row_returning_statement_are_the_result(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE t (id int, name text);"
                                        "INSERT INTO t VALUES (1, 'a;b'), (2, $$c;d$$);"
                                        "SELECT id, name FROM t ORDER BY id;"
                                        "INSERT INTO t VALUES (3, 'e');"})
    assert env.status == "ok", env.error
    assert env.data == [{"id": 1, "name": "a;b"}, {"id": 2, "name": "c;d"}]
    meta = env.meta.model_extra or {}
    assert meta["columns"] == ["id", "name"] and meta["statement_count"] == 4 and meta["row_count"] == 2


async def test_a_list_of_commands_without_rows_gives_an_empty_list(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": ["CREATE TABLE t (x int)", "INSERT INTO t VALUES (1)",
                                         "UPDATE t SET x = 2"]})
    assert env.data == [] and (env.meta.model_extra or {})["statement_count"] == 3


async def test_a_function_body_with_semicolons_is_one_statement(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE FUNCTION twice(x int) RETURNS int LANGUAGE plpgsql AS $fn$"
                                        " BEGIN RETURN x * 2; END; $fn$; SELECT twice(21) AS v"})
    assert env.data == [{"v": 42}] and (env.meta.model_extra or {})["statement_count"] == 2


async def test_named_params_are_bound_never_spliced(pg_dsn: str) -> None:
    evil = "x'); DROP TABLE t; --"
    env = await sql(pg_dsn, {"command": "CREATE TABLE t (name text, n int);"
                                        "INSERT INTO t VALUES (%(name)s, %(n)s);"
                                        "SELECT name, n FROM t WHERE name = %(name)s",
                             "params": {"name": evil, "n": 3}})
    assert env.data == [{"name": evil, "n": 3}]
    assert tables(pg_dsn) == ["t"]


async def test_positional_params_are_consumed_in_statement_order(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": ["CREATE TABLE t (a int, b int)", "INSERT INTO t VALUES (%s, %s)",
                                         "SELECT a, b, a + %s AS c FROM t"],
                             "params": [1, 2, 100]})
    assert env.data == [{"a": 1, "b": 2, "c": 101}]


async def test_a_failure_rolls_the_whole_attempt_back(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE kept_only_on_success (x int);"
                                        "INSERT INTO kept_only_on_success VALUES (1);"
                                        "SELECT * FROM missing_table"})
    assert env.error is not None and env.error.kind == "sql_syntax" and env.error.code == "42P01"
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
    row = env.data[0]
    assert row == {"n": 1.5, "whole": 7, "day": "2024-01-02", "ts": row["ts"], "raw": "AQI=",
                   "u": "00000000-0000-0000-0000-000000000001", "j": {"k": [1, 2.5]}, "arr": [1, 2],
                   "iv": 90.0, "nothing": None}
    assert row["ts"].startswith("2024-01-02T") and isinstance(row["ts"], str)


async def test_a_constraint_violation_is_sql_constraint(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "CREATE TABLE u (x int PRIMARY KEY);"
                                        "INSERT INTO u VALUES (1); INSERT INTO u VALUES (1)"})
    assert env.error is not None and env.error.kind == "sql_constraint" and env.error.code == "23505"


async def test_a_syntax_error_is_sql_syntax(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "SELEC 1"})
    assert env.error is not None and env.error.kind == "sql_syntax" and env.error.retryable is False


async def test_bad_input_data_is_a_validation_error(pg_dsn: str) -> None:
    env = await sql(pg_dsn, {"command": "SELECT 'abc'::int"})
    assert env.error is not None and env.error.kind == "validation" and env.error.code == "22P02"


async def test_a_credential_with_db_fields_connects(pg_dsn: str) -> None:
    parts = conninfo_to_dict(pg_dsn)
    fields = {"db_host": parts.get("host"), "db_port": parts.get("port", "5432"),
              "db_user": parts.get("user"), "db_password": "unused-secret", "db_name": parts["dbname"]}
    creds = StoredCredentials({"pg_main": ("postgres", fields)})
    env = await PostgresTool().run(make_call("postgres", {"command": "SELECT current_database() AS db",
                                                          "auth": "pg_main"}, credentials=creds))
    assert env.data == [{"db": parts["dbname"]}]


async def test_a_missing_credential_is_missing_credential() -> None:
    env = await PostgresTool().run(make_call("postgres", {"command": "SELECT 1", "auth": "pg_nowhere"}))
    assert env.error is not None and env.error.kind == "missing_credential"
    assert "pg_nowhere" in env.error.message


async def test_an_unknown_role_is_an_auth_error(pg_dsn: str) -> None:
    dsn = make_conninfo(pg_dsn, user="no_such_role_here")
    env = await sql(dsn, {"command": "SELECT 1"})
    assert env.error is not None and env.error.kind == "auth", env.error


async def test_a_refused_connection_is_a_retryable_connection_error() -> None:
    dsn = f"host=127.0.0.1 port={free_port()} dbname=x user=x password=hunter2-secret"
    env = await sql(dsn, {"command": "SELECT 1"}, timeout_s=10)
    assert env.error is not None and env.error.kind == "connection" and env.error.retryable is True
    assert "hunter2-secret" not in env.model_dump_json()


async def test_a_slow_statement_is_a_timeout(pg_dsn: str) -> None:
    started = time.perf_counter()
    env = await sql(pg_dsn, {"command": "SELECT pg_sleep(10)"}, timeout_s=0.5)
    assert env.error is not None and env.error.kind == "timeout"
    assert time.perf_counter() - started < 4
