"""The SQL tools (spec 3.2): duckdb, and postgres through a stored credential (spec 10), each as a playbook
run through the real stack with `noetl run --json`. Postgres is the stack's own embedded server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    Batch,
    Case,
    Noetl,
    branch_error,
    completed,
    fan_out,
    inline,
    of_type,
    store_pg_credential,
)


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
                    - "DELETE FROM t WHERE x = ?"
                  params: [1, 2, 1]
                next: {arcs: [{step: read}]}
              - step: read
                tool:
                  kind: python
                  input: {rows: "{{ q.rows }}", n: "{{ q.row_count }}", cols: "{{ q.columns }}",
                          statements: "{{ q.statement_count }}", first: "{{ q.command_2.rows[0].x }}",
                          inserted: "{{ q.command_1.row_count }}", deleted: "{{ q.command_3.row_count }}",
                          whole: "{{ q }}"}
                  code: |
                    result = {'rows': rows, 'n': n, 'cols': cols, 'statements': statements, 'first': first,
                              'inserted': inserted, 'deleted': deleted, 'got': whole.get('rows'),
                              'keys': sorted(k for k, _ in whole.items())}
            """)),
        "loop_over_rows": Case(inline("loop_over_rows", """\
            workflow:
              - step: q
                tool: {kind: duckdb, command: "SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) t(id, nm)"}
                next: {arcs: [{step: each}]}
              - step: each
                loop: {in: "{{ q }}", iterator: row, spec: {mode: parallel}}
                tool: {kind: python, input: {row: "{{ row }}"}, code: "result = row['nm'] * row['id']"}
            """)),
        "large_by_reference": Case(inline("large_by_reference", """\
            workflow:
              - step: q
                tool:
                  kind: duckdb
                  command: |
                    CREATE TABLE big AS SELECT range AS id, 'row-' || range AS label FROM range(20000);
                    SELECT id, label FROM big ORDER BY id;
                next: {arcs: [{step: read}]}
              - step: read
                tool:
                  kind: python
                  input: {rows: "{{ q.rows }}", n: "{{ q.row_count }}",
                          created: "{{ q.command_0.row_count }}", last: "{{ q.command_1.rows[-1].label }}"}
                  code: "result = {'rows': len(rows), 'n': n, 'created': created, 'last': last}"
            """), events=True),
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
    return store_pg_credential(e2e_stack, "e2e_pg")


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, pg_credential: str | None,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    cases = duckdb_cases(tmp_path_factory.mktemp("duckdb"))
    if pg_credential is not None:
        cases |= postgres_cases(pg_credential)
    batch = e2e_stack.batch(cases)
    yield batch
    batch.close()


# ---------------------------------------------------------------------- duckdb
def test_duckdb_binds_named_params_instead_of_splicing_them(runs: Batch) -> None:
    run = runs["duckdb"]
    completed(run)
    assert run.step("named")["result"]["rows"] == [{"s": 5, "who": "O'Brien'); DROP TABLE x; --"}]


def test_a_multi_statement_result_has_the_last_row_set_and_each_statement_as_command_i(runs: Batch) -> None:
    run = runs["positional_params_and_handles"]
    completed(run)
    rows = [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    assert run.step("q")["result"] == {
        "rows": rows, "row_count": 2, "columns": ["x", "y"], "statement_count": 4,
        "command_0": {"rows": [], "row_count": 0, "columns": []},
        "command_1": {"rows": [], "row_count": 2, "columns": []},
        "command_2": {"rows": rows, "row_count": 2, "columns": ["x", "y"]},
        "command_3": {"rows": [], "row_count": 1, "columns": []},
    }


def test_templates_and_python_code_read_a_sql_result_by_its_keys(runs: Batch) -> None:
    run = runs["positional_params_and_handles"]
    completed(run)
    rows = [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    assert run.step("read")["result"] == {
        "rows": rows, "n": 2, "cols": ["x", "y"], "statements": 4, "first": 1, "inserted": 2, "deleted": 1,
        "got": rows, "keys": ["columns", "command_0", "command_1", "command_2", "command_3", "row_count",
                              "rows", "statement_count"]}


def test_a_loop_over_a_sql_result_iterates_its_rows(runs: Batch) -> None:
    run = runs["loop_over_rows"]
    completed(run)
    assert run.step("each")["result"] == ["a", "bb", "ccc"]


def test_a_large_sql_result_travels_by_reference_and_templates_read_its_rows(runs: Batch) -> None:
    run = runs["large_by_reference"]
    completed(run)
    assert run.step("read")["result"] == {"rows": 20000, "n": 20000, "created": 20000, "last": "row-19999"}
    [outcome] = of_type([e for e in run.log if e["step"] == "q"], "step.succeeded")
    assert outcome["result"]["data"] is None
    ref = outcome["result"]["ref"]
    assert ref["format"] == "arrow" and ref["row_count"] == 20000
    assert ref["preview"]["rows"][0] == {"id": 0, "label": "row-0"}
    whole = run.step("q")["result"]  # the CLI resolves the reference
    assert whole["statement_count"] == 2 and whole["rows"] == whole["command_1"]["rows"]
    assert len(whole["rows"]) == 20000


def test_a_duckdb_file_database_keeps_its_tables_between_steps(runs: Batch) -> None:
    run = runs["file_database"]
    completed(run)
    assert run.step("read")["result"]["rows"] == [{"total": 3}]


def test_duckdb_values_become_json_friendly(runs: Batch) -> None:
    run = runs["duckdb"]
    completed(run)
    assert run.step("types")["result"]["rows"] == [{"ts": "2026-01-02T03:04:05", "d": "2026-01-02",
                                                "dec": 1.25, "b": "aGk=", "nothing": None}]


def test_a_statement_that_returns_no_rows_gives_empty_rows(runs: Batch) -> None:
    run = runs["duckdb"]
    completed(run)
    assert run.step("no_rows")["status"] == "succeeded"
    assert run.step("no_rows")["result"] == {"rows": [], "row_count": 0, "columns": [], "statement_count": 1,
                                             "command_0": {"rows": [], "row_count": 0, "columns": []}}


def test_a_duckdb_syntax_error_is_a_non_retryable_sql_syntax_error(runs: Batch) -> None:
    error = branch_error(runs["duckdb"], "syntax")
    assert (error["kind"], error["retryable"]) == ("sql_syntax", False)


# ---------------------------------------------------------------------- postgres
def test_postgres_through_a_stored_credential_binds_params_and_rolls_a_failed_attempt_back(
        runs: Batch, pg_credential: str | None) -> None:
    assert pg_credential is not None, "`noetl credential set` could not store the postgres credential"
    run = runs["postgres"]
    completed(run)
    assert run.step("setup")["result"]["rows"] == []
    assert run.step("setup")["result"]["command_1"]["row_count"] == 2
    assert run.step("query")["result"]["rows"] == [{"id": 1, "name": "a", "amount": 1.5},
                                                   {"id": 2, "name": "b", "amount": 2.25}]
    bad = run.step("bad")
    assert bad["status"] == "failed"
    assert (bad["error"]["kind"], bad["error"]["retryable"]) == ("db_constraint", False)
    assert run.step("count")["result"]["rows"] == [{"n": 2}]  # the failed attempt's first insert rolled back


def test_a_postgres_step_naming_an_unknown_credential_fails_with_missing_credential(runs: Batch) -> None:
    error = branch_error(runs["duckdb"], "no_credential")
    assert error["kind"] == "missing_credential"
    assert "no_such_credential_e2e" in error["message"]
