"""The specification's own examples run as written: the YAML blocks of sections 4 (`next`), 6 (`loop`) and
6.1 (a cursor loop), read from `../shared/spec/playbook.md` and placed in a playbook around them unchanged
(the steps, the workload and the table they name are supplied; nothing inside a block is edited).

The other blocks are skeletons with `...` placeholders (sections 1, 2, 7) or need a deployment's pools
(section 11): tests/e2e/test_spec_skeletons.py fills their placeholders and runs them."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.helpers import Batch, Case, Noetl, completed, make_playbook

SPEC = REPO.parent / "shared" / "spec" / "playbook.md"
pytestmark = pytest.mark.skipif(not SPEC.is_file(), reason="the specification is not beside this clone")


def spec_block(heading: str) -> dict[str, Any]:
    """The first YAML block after `heading` in the specification, parsed."""
    text = SPEC.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.search(r"```yaml\n(.*?)```", text[start:], re.DOTALL)
    assert match, f"no YAML block after {heading!r} in {SPEC}"
    block = yaml.safe_load(match.group(1))
    assert isinstance(block, dict), block
    return block


def playbook(name: str, body: dict[str, Any]) -> str:
    return make_playbook(f"{name}_{uuid.uuid4().hex[:8]}", yaml.safe_dump(body, sort_keys=False))


def routing_case(hot: bool) -> Case:
    next_ = spec_block("## 4. Routing: `next`")["next"]
    return Case(playbook("spec_routing", {
        "workload": {"hot": hot},
        "workflow": [
            {"step": "eval_flag", "tool": {"kind": "python", "input": {"hot": "{{ workload.hot }}"},
                                           "code": "result = {'is_hot': hot}"},
             "next": next_},
            {"step": "hot_path", "tool": {"kind": "noop", "result": "{{ ctx.route }}"}},
            {"step": "cold_path", "tool": {"kind": "noop", "result": "cold"}},
        ]}))


def loop_case() -> Case:
    loop = spec_block("## 6. Loops")["loop"]
    return Case(playbook("spec_loop", {
        "workload": {"users": [{"name": "ana"}, {"name": "bo"}, {"name": "cy"}]},
        "workflow": [{"step": "greet", "loop": loop,
                      "tool": {"kind": "noop", "result": "hi {{ user.name }} #{{ iter._index }}"}}]}))


def cursor_case(table: str) -> Case:
    loop = spec_block("### 6.1 Cursor loops")["loop"]
    return Case(playbook("spec_cursor", {
        "workflow": [
            {"step": "enqueue", "tool": {"kind": "postgres", "auth": "pg_main", "command": [
                f"INSERT INTO {table} (id, payload, status, run) SELECT g, 'job ' || g, 'pending', "
                "{{ execution_id }} FROM generate_series(1, 20) g"]},
             "next": "drain"},
            {"step": "drain", "loop": loop,
             "tool": {"kind": "postgres", "auth": "pg_main",
                      "command": f"UPDATE {table} SET status = 'done' WHERE id = {{{{ job.id }}}} "
                                 "RETURNING id, payload"}},
        ]}))


@pytest.fixture(scope="module")
def work_table(e2e_stack: Noetl) -> str:
    """The spec's cursor example names the credential `pg_main` and the table `work`: the credential is
    made for the stack's own database, and `work` is a view onto a table of this module's own."""
    dsn = json.loads((e2e_stack.home / "dev.json").read_text())["pg_dsn"]
    stored = e2e_stack("credential", "set", "pg_main", "--type", "postgres",
                       "--data", json.dumps({"dsn": dsn}))
    assert stored.returncode == 0, stored.stderr
    table = f"work_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, payload text, status text, "
                     "claimed_at timestamptz, run bigint)")
        conn.execute(f"CREATE OR REPLACE VIEW work AS SELECT * FROM {table}")
    return table


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, work_table: str) -> Iterator[Batch]:
    batch = e2e_stack.batch({"hot": routing_case(True), "cold": routing_case(False), "loop": loop_case(),
                             "cursor": cursor_case(work_table)})
    yield batch
    batch.close()


def test_the_routing_example_takes_the_hot_arc_with_its_set_or_else_the_cold_one(runs: Batch) -> None:
    hot, cold = runs["hot"], runs["cold"]
    completed(hot)
    completed(cold)
    assert hot.step("hot_path")["result"] == "hot" and not hot.ran("cold_path")
    assert cold.step("cold_path")["result"] == "cold" and not cold.ran("hot_path")


def test_the_loop_example_runs_one_user_at_a_time_in_input_order(runs: Batch) -> None:
    run = runs["loop"]
    completed(run)
    assert run.step("greet")["result"] == ["hi ana #0", "hi bo #1", "hi cy #2"]


def test_the_cursor_loop_example_claims_every_queued_row_of_its_run_once(runs: Batch) -> None:
    run = runs["cursor"]
    completed(run)
    drained = run.step("drain")["result"]
    assert drained["stats"] == {"claimed": 20, "succeeded": 20, "failed": 0}
    ids = sorted(result["rows"][0]["id"] for result in drained["results"])
    assert ids == list(range(1, 21))
