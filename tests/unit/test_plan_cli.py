"""`noetl plan`, `noetl validate --pools`, `noetl eval planning` as a user runs them (no stack needed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from noetl.cli import app
from tests.conftest import EXAMPLES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
POOLS = """\
pools:
  - name: default
    capacity: {cpu: 2, pg_connections: 1}
  - name: gpu-small
    labels: [gpu, a100]
    capacity: {cpu: 4, gpu: 1}
"""
TRAIN = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: train}
workload: {shards: [1, 2, 3, 4, 5]}
workflow:
  - step: prep
    loop: {in: "{{ workload.shards }}", iterator: s, spec: {mode: parallel}}
    tool: {kind: python, code: "result = s"}
    next: {arcs: [{step: train}]}
  - step: train
    spec: {resources: {gpu: 2, cpu: 2, prefer: [h100]}}
    tool: {kind: python, code: "result = 1"}
"""


@pytest.fixture(autouse=True)
def no_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No pools configured, no Postgres: the planner must work with nothing around it."""
    monkeypatch.setenv("NOETL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NOETL_POOLS", raising=False)
    monkeypatch.delenv("NOETL_PG_DSN", raising=False)
    yield


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def check_plan(data: dict) -> None:
    """Every pool's capacity holds at every moment, and every edge is respected."""
    starts, ends = data["schedule"]["starts_ms"], data["schedule"]["ends_ms"]
    for a, b in data["edges"]:
        assert starts[b] >= ends[a], (a, b)
    assert data["schedule"]["makespan_ms"] == max(ends, default=0)
    assert data["lower_bound_ms"] <= data["schedule"]["makespan_ms"]
    for pool, capacity in data["capacities"].items():
        mine = [s for s in data["steps"] if s["pool"] == pool and ends[s["id"]] > starts[s["id"]]]
        for t in sorted({starts[s["id"]] for s in mine}):
            for resource, units in capacity.items():
                used = sum(s["resources"].get(resource, 0) for s in mine
                           if starts[s["id"]] <= t < ends[s["id"]])
                assert used <= units, (pool, resource, t)
        for s in mine:
            assert set(s["resources"]) <= set(capacity)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_plans_within_capacity_and_precedence(path: Path) -> None:
    code, out, err = invoke("plan", str(path), "--json", "--max-solve-seconds", "0.5")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"steps", "edges", "capacities", "schedule", "lower_bound_ms", "status", "solve_ms"}
    assert data["capacities"] == {"default": {"cpu": 4}}
    check_plan(data)
    assert "durations: per-kind defaults (no stack" in err


def test_the_parallel_loop_example_expands_and_a_payload_changes_it() -> None:
    path = str(EXAMPLES / "04_loop_parallel.yaml")
    code, out, _ = invoke("plan", path, "--json", "--payload", '{"n": 12}', "--resources", "cpu=8")
    assert code == 0
    data = json.loads(out)
    assert [s["loop_index"] for s in data["steps"] if s["step"] == "square"] == list(range(12))
    assert data["capacities"] == {"default": {"cpu": 8}}
    check_plan(data)
    # max_in_flight 3: 12 items of 1 s in 3 lanes, then `total`
    assert data["schedule"]["makespan_ms"] == 5000 and data["status"] == "OPTIMAL"


def test_the_readable_table_names_pools_status_and_where_durations_come_from() -> None:
    code, out, _ = invoke("plan", str(EXAMPLES / "02_join.yaml"))
    assert code == 0
    assert "status OPTIMAL" in out and "pool default: cpu 4 (peak 3)" in out
    assert "merge" in out and "note: durations: per-kind defaults" in out


def test_pools_from_a_file_and_a_step_no_pool_can_run(tmp_path: Path) -> None:
    pools, book = tmp_path / "pools.yaml", tmp_path / "train.yaml"
    pools.write_text(POOLS)
    book.write_text(TRAIN)
    code, out, err = invoke("plan", str(book), "--pools", str(pools), "--json")
    assert code == 1 and out == ""
    assert "step 'train' needs gpu: 2 but the largest gpu capacity is 1 (pool 'gpu-small')" in err
    assert "warning:" in err  # the validation warning came first, located
    code, out, err = invoke("plan", str(book), "--pools", str(pools), "--json", "--resources", "gpu=2")
    assert code == 0, err
    data = json.loads(out)
    check_plan(data)
    assert next(s for s in data["steps"] if s["step"] == "train")["pool"] == "default"


def test_validate_warns_about_unrunnable_steps_only_when_pools_are_known(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = tmp_path / "train.yaml"
    book.write_text(TRAIN)
    code, _, err = invoke("validate", str(book))
    assert code == 0 and "warning" not in err
    home = tmp_path / "home"
    home.mkdir()
    (home / "pools.yaml").write_text(POOLS)
    code, _, err = invoke("validate", str(book))
    assert code == 0
    assert f"{book}:11:" in err and "workflow[1].spec.resources: warning: step 'train' needs gpu: 2" in err
    code, _, err = invoke("validate", "--strict", str(book))
    assert code == 1
    monkeypatch.setenv("NOETL_POOLS", '{"pools": [{"name": "big", "capacity": {"gpu": 8, "cpu": 8}}]}')
    code, _, err = invoke("validate", "--strict", str(book))
    assert code == 0, err


def test_invalid_input_exits_two_with_located_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: b}\nworkflow:\n"
                   "  - step: a\n    tool: {kind: pyton}\n")
    code, out, err = invoke("plan", str(bad))
    assert code == 2 and f"{bad}:6:" in err and "unknown tool kind 'pyton'" in err
    assert invoke("plan", str(tmp_path / "missing.yaml"))[0] == 2
    bad_pools = tmp_path / "pools.yaml"
    bad_pools.write_text("pools:\n  - {name: a, capacity: {cpu: many}}\n")
    code, _, err = invoke("plan", str(EXAMPLES / "01_hello.yaml"), "--pools", str(bad_pools))
    assert code == 2 and f"{bad_pools}:2:" in err and "capacity of 'cpu' must be a whole number" in err
    assert invoke("plan", str(EXAMPLES / "01_hello.yaml"), "--payload", "[1]")[0] == 2
    assert invoke("plan", str(EXAMPLES / "01_hello.yaml"), "--resources", "cpu")[0] == 2


def test_eval_planning_matches_the_brute_force_optimum_on_a_few_instances() -> None:
    code, out, err = invoke("eval", "planning", "--instances", "12", "--seed", "3")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["instances"] == 12 and report["optimal"] == 12 and report["passed"]
