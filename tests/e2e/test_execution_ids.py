"""Spec 13 (amended 2026-12-07): an execution id is a positive 64-bit integer, time-ordered, shown as its
decimal digits. NoETL's playbooks write `{{ execution_id }}` unquoted into SQL and into BIGINT columns:
what lands there must be the id `noetl run --json` prints, and `noetl status` / `noetl events` read it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import psycopg
import pytest

from tests.e2e.helpers import Doc, Noetl, of_type


def completed(code: int, doc: Doc) -> None:
    assert (code, doc["status"]) == (0, "completed"), json.dumps(doc, default=str)[:3000]


def is_int64_id(text: object) -> bool:
    return isinstance(text, str) and len(text) == 19 and text.isdigit() and 0 < int(text) < 2**63


@pytest.fixture(scope="module")
def pg_credential(e2e_stack: Noetl) -> tuple[str, str]:
    """(a postgres credential for the stack's own database, its DSN)."""
    dsn = json.loads((e2e_stack.home / "dev.json").read_text())["pg_dsn"]
    name = f"e2e_ids_{uuid.uuid4().hex[:8]}"
    stored = e2e_stack("credential", "set", name, "--type", "postgres", "--data", json.dumps({"dsn": dsn}))
    assert stored.returncode == 0, stored.stderr
    return name, dsn


def test_execution_id_written_unquoted_into_a_duckdb_bigint_column_is_the_id_the_cli_prints(
        noetl: Noetl, playbook: Callable[..., str]) -> None:
    code, doc = noetl.run_json(playbook("""\
        workflow:
          - step: store
            tool:
              kind: duckdb
              command: |
                CREATE TABLE runs (execution_id BIGINT);
                INSERT INTO runs VALUES ({{ execution_id }});
                SELECT execution_id, CAST(execution_id AS VARCHAR) AS digits, typeof(execution_id) AS type
                FROM runs;
            next: {arcs: [{step: native}]}
          - step: native
            tool:
              kind: python
              input: {eid: "{{ execution_id }}", job: "{{ job }}"}
              code: "result = {'type': type(eid).__name__, 'eid': eid, 'job': job}"
        """))
    completed(code, doc)
    execution_id = doc["execution_id"]
    assert is_int64_id(execution_id), execution_id
    assert doc["steps"]["store"]["result"]["rows"] == [
        {"execution_id": int(execution_id), "digits": execution_id, "type": "BIGINT"}]
    number = int(execution_id)  # templates see a number (spec 13), also as job.*
    assert doc["steps"]["native"]["result"] == {
        "type": "int", "eid": number, "job": {"uuid": number, "execution_id": number, "id": number}}


def test_execution_id_written_unquoted_into_a_postgres_bigint_column_is_the_id_the_cli_prints(
        noetl: Noetl, playbook: Callable[..., str], pg_credential: tuple[str, str]) -> None:
    credential, dsn = pg_credential
    table = f"e2e_runs_{uuid.uuid4().hex[:8]}"
    code, doc = noetl.run_json(playbook(f"""\
        workflow:
          - step: store
            tool:
              kind: postgres
              auth: {credential}
              command: |
                CREATE TABLE {table} (execution_id BIGINT PRIMARY KEY, note text);
                INSERT INTO {table} VALUES ({{{{ execution_id }}}}, 'run {{{{ execution_id }}}}');
                SELECT execution_id, execution_id::text AS digits, pg_typeof(execution_id)::text AS type, note
                FROM {table};
        """))
    completed(code, doc)
    execution_id = doc["execution_id"]
    assert is_int64_id(execution_id), execution_id
    assert doc["steps"]["store"]["result"]["rows"] == [
        {"execution_id": int(execution_id), "digits": execution_id, "type": "bigint",
         "note": f"run {execution_id}"}]
    with psycopg.connect(dsn) as conn:  # read back by another client: the stored value itself
        stored = conn.execute(f"SELECT execution_id FROM {table}").fetchall()
        conn.execute(f"DROP TABLE {table}")
    assert stored == [(int(execution_id),)]


def test_status_and_events_take_the_new_id_and_show_it_as_the_same_digits(
        noetl: Noetl, playbook: Callable[..., str]) -> None:
    code, doc = noetl.run_json(playbook("""\
        workflow:
          - {step: one, tool: {kind: noop}}
        """))
    completed(code, doc)
    execution_id = doc["execution_id"]
    status = noetl("status", execution_id, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "completed"
    text = noetl("status", execution_id)
    assert text.returncode == 0 and text.stdout.startswith(f"execution {execution_id}: completed"), text
    log = noetl.events(execution_id)
    assert {e["execution_id"] for e in log} == {execution_id}
    assert of_type(log, "execution.completed")


def test_executions_started_one_after_another_have_increasing_ids(
        noetl: Noetl, playbook: Callable[..., str]) -> None:
    body = playbook("""\
        workflow:
          - {step: one, tool: {kind: noop}}
        """)
    ids = []
    for _ in range(2):
        code, doc = noetl.run_json(body)
        completed(code, doc)
        ids.append(doc["execution_id"])
    assert all(is_int64_id(i) for i in ids)
    assert int(ids[0]) < int(ids[1]) and ids[0] < ids[1]  # as numbers and as text
