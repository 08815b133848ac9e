"""The SQL tools (spec 3.2): duckdb, and postgres through a stored credential (spec 10), each as a playbook
run through the real stack with `noetl run --json`. Postgres is the stack's own embedded server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import Batch, Case, Noetl, Outcome, branch_error, fan_out, inline


def duckdb_cases(scratch: Path) -> dict[str, Case]:
    return {
        "duckdb": Case(inline("duckdb", fan_out({
            "named": '{kind: duckdb, query: "SELECT $a + $b AS s, $name AS who", '
                     'params: {a: 2, b: 3, name: "O\'Brien\'); DROP TABLE x; --"}}',
            "types": '{kind: duckdb, query: "SELECT TIMESTAMP \'2026-01-02 03:04:05\' AS ts, '
                     'DATE \'2026-01-02\' AS d, CAST(1.25 AS DECIMAL(5,2)) AS dec, '
                     'CAST(\'hi\' AS BLOB) AS b, NULL AS nothing"}',
            "no_rows": '{kind: duckdb, command: "CREATE TABLE t (x INTEGER)"}',
            "syntax": '{kind: duckdb, command: "SELEC 1"}',
            "no_credential": '{kind: postgres, auth: no_such_credential_e2e, command: "SELECT 1"}',
        }))),
        "positional_params_and_handles": Case(inline("positional_params_and_handles", """\
            workflow:
              - step: q
                tool:
                  kind: duckdb
                  commands:
                    - "CREATE TABLE t (x INTEGER, y VARCHAR)"
                    - "INSERT INTO t VALUES (?, 'a'), (?, 'b')"
                    - "SELECT x, y FROM t ORDER BY x"
                  params: [1, 2]
                next: {arcs: [{step: read}]}
              - step: read
                tool:
                  kind: python
                  input: {rows: "{{ q.rows }}", n: "{{ q.row_count }}", cols: "{{ q.columns }}",
                          statements: "{{ q.statement_count }}", whole: "{{ q }}"}
                  code: |
                    result = {'rows': rows, 'n': n, 'cols': cols, 'statements': statements,
                              'same': whole == rows}
            """)),
        "file_database": Case(inline("file_database", """\
            workflow:
              - step: write
                tool:
                  kind: duckdb
                  database: "{{ workload.db }}"
                  command: "CREATE TABLE kv (k VARCHAR, v INTEGER); INSERT INTO kv VALUES ('a', 1), ('b', 2);"
                next: {arcs: [{step: read}]}
              - step: read
                tool: {kind: duckdb, database: "{{ workload.db }}", command: "SELECT sum(v) AS total FROM kv"}
            """), payload={"db": str(scratch / f"e2e-{uuid.uuid4().hex[:8]}.duckdb")}),
    }


def postgres_cases(credential: str) -> dict[str, Case]:
    table = f"e2e_{uuid.uuid4().hex[:8]}"
    return {
        "postgres": Case(inline("postgres", f"""\
            workload: {{pg_auth: {credential}}}
            workflow:
              - step: setup
                tool: postgres
                auth: "{{{{ workload.pg_auth }}}}"
                command: |
                  CREATE TABLE {table} (id integer PRIMARY KEY, name text, amount numeric(8,2));
                  INSERT INTO {table} VALUES (1, 'a', 1.50), (2, 'b', 2.25);
                next: query
              - step: query
                tool:
                  kind: postgres
                  auth: {{main: {{source: credential, key: {credential}, tool: postgres}}}}
                  query: "SELECT id, name, amount FROM {table} WHERE name <> %(skip)s ORDER BY id"
                  params: {{skip: "x'; DROP TABLE {table}; --"}}
                next: bad
              - step: bad
                tool:
                  kind: postgres
                  credential: {credential}
                  commands:
                    - "INSERT INTO {table} VALUES (3, 'c', 0)"
                    - "INSERT INTO {table} VALUES (1, 'dup', 0)"
                next: [{{step: count, when: "{{{{ event.name == 'call.error' }}}}"}}]
              - step: count
                tool: {{kind: postgres, auth: {credential}, command: "SELECT count(*) AS n FROM {table}"}}
            """)),
    }


@pytest.fixture(scope="module")
def pg_credential(e2e_stack: Noetl) -> str | None:
    """A postgres credential for the stack's own database (None when `noetl credential` is missing)."""
    if e2e_stack("credential", "set", "--help").returncode != 0:
        return None
    dsn = json.loads((e2e_stack.home / "dev.json").read_text())["pg_dsn"]
    name = f"e2e_pg_{uuid.uuid4().hex[:8]}"
    stored = e2e_stack("credential", "set", name, "--type", "postgres", "--data", json.dumps({"dsn": dsn}))
    assert stored.returncode == 0, stored.stderr
    return name


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, pg_credential: str | None,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    cases = duckdb_cases(tmp_path_factory.mktemp("duckdb"))
    if pg_credential is not None:
        cases |= postgres_cases(pg_credential)
    batch = e2e_stack.batch(cases)
    yield batch
    batch.close()


def completed(run: Outcome) -> None:
    assert (run.code, run.status) == (0, "completed"), run


# ---------------------------------------------------------------------- duckdb
def test_duckdb_binds_named_params_instead_of_splicing_them(runs: Batch) -> None:
    run = runs["duckdb"]
    completed(run)
    assert run.step("named")["result"] == [{"s": 5, "who": "O'Brien'); DROP TABLE x; --"}]


def test_duckdb_returns_the_last_row_set_and_exposes_rows_row_count_columns_statement_count(
        runs: Batch) -> None:
    run = runs["positional_params_and_handles"]
    completed(run)
    rows = [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    assert run.step("q")["result"] == rows
    assert run.step("read")["result"] == {"rows": rows, "n": 2, "cols": ["x", "y"], "statements": 3,
                                          "same": True}


def test_a_duckdb_file_database_keeps_its_tables_between_steps(runs: Batch) -> None:
    run = runs["file_database"]
    completed(run)
    assert run.step("read")["result"] == [{"total": 3}]


def test_duckdb_values_become_json_friendly(runs: Batch) -> None:
    run = runs["duckdb"]
    completed(run)
    assert run.step("types")["result"] == [{"ts": "2026-01-02T03:04:05", "d": "2026-01-02", "dec": 1.25,
                                        "b": "aGk=", "nothing": None}]


def test_statements_that_return_no_rows_give_an_empty_list(runs: Batch) -> None:
    run = runs["duckdb"]
    completed(run)
    assert run.step("no_rows")["status"] == "succeeded"
    assert run.step("no_rows")["result"] == []


def test_a_duckdb_syntax_error_is_a_non_retryable_sql_syntax_error(runs: Batch) -> None:
    error = branch_error(runs["duckdb"], "syntax")
    assert (error["kind"], error["retryable"]) == ("sql_syntax", False)


# ---------------------------------------------------------------------- postgres
def test_postgres_through_a_stored_credential_binds_params_and_rolls_a_failed_attempt_back(
        runs: Batch, pg_credential: str | None) -> None:
    assert pg_credential is not None, "`noetl credential set` could not store the postgres credential"
    run = runs["postgres"]
    completed(run)
    assert run.step("setup")["result"] == []
    assert run.step("query")["result"] == [{"id": 1, "name": "a", "amount": 1.5},
                                           {"id": 2, "name": "b", "amount": 2.25}]
    bad = run.step("bad")
    assert bad["status"] == "failed"
    assert (bad["error"]["kind"], bad["error"]["retryable"]) == ("sql_constraint", False)
    assert run.step("count")["result"] == [{"n": 2}]  # the failed attempt's first insert was rolled back


def test_a_postgres_step_naming_an_unknown_credential_fails_with_missing_credential(runs: Batch) -> None:
    error = branch_error(runs["duckdb"], "no_credential")
    assert error["kind"] == "missing_credential"
    assert "no_such_credential_e2e" in error["message"]
