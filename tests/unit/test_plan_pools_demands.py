"""Pools (the deployment's configuration) and demands (what a step holds while it runs)."""

from __future__ import annotations

import pytest

from engine.dsl.load import load_playbook_text
from engine.dsl.model import Playbook
from engine.plan.demands import Demand, feasible_pools, infeasibility_reason, preference_penalty, step_demand
from engine.plan.pools import (
    PoolConfigError,
    PoolSet,
    parse_capacity_overrides,
    parse_pools,
)

POOLS_YAML = """\
pools:
  - name: default
    labels: [cpu]
    capacity: {cpu: 8, memory_mb: 16384, pg_connections: 4}
  - name: gpu-small
    labels: [gpu, a100]
    capacity: {cpu: 8, gpu: 1}
  - name: gpu-big
    labels: [gpu, h100]
    capacity: {cpu: 16, gpu: 4, memory_mb: 65536}
defaults:
  duckdb: {cpu: 2, memory_mb: 4096}
"""


def playbook(steps: str, extra: str = "") -> Playbook:
    text = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: t}}\n{extra}workflow:\n{steps}"
    loaded = load_playbook_text(text)
    assert loaded.playbook is not None, [d.format() for d in loaded.diagnostics]
    return loaded.playbook


@pytest.fixture
def pools() -> PoolSet:
    return parse_pools(POOLS_YAML, "pools.yaml")


def test_a_pools_file_is_read_with_labels_capacities_and_kind_defaults(pools: PoolSet) -> None:
    assert pools.names == ("default", "gpu-small", "gpu-big")
    assert pools.get("gpu-big").labels == frozenset({"gpu", "h100"})  # type: ignore[union-attr]
    assert pools.get("default").capacity == {"cpu": 8, "memory_mb": 16384, "pg_connections": 4}  # type: ignore[union-attr]
    assert pools.kind_defaults == {"duckdb": {"cpu": 2, "memory_mb": 4096}}
    assert set(pools.resources) == {"cpu", "memory_mb", "pg_connections", "gpu"}
    assert pools.source == "pools.yaml"


def test_the_mapping_form_and_json_are_accepted() -> None:
    mapping = parse_pools("pools: {a: {capacity: {cpu: 2}}, b: {labels: gpu, capacity: {gpu: 1}}}")
    assert mapping.names == ("a", "b") and mapping.get("b").labels == {"gpu"}  # type: ignore[union-attr]
    as_json = parse_pools('{"pools": [{"name": "x", "capacity": {"cpu": 3}}]}', "NOETL_POOLS")
    assert as_json.get("x").capacity == {"cpu": 3}  # type: ignore[union-attr]


def test_without_configuration_there_is_one_default_pool_with_four_cpus() -> None:
    default = PoolSet.default()
    assert default.names == ("default",)
    assert dict(default.default_pool.capacity) == {"cpu": 4}


def test_every_problem_of_a_pools_file_is_reported_with_its_line() -> None:
    text = ("pools:\n"
            "  - name: default\n"
            "    capacity: {cpu: two, gpu: -1}\n"
            "    lables: [x]\n"
            "  - name: 'bad name'\n"
            "    capacity: {cpu: 1}\n"
            "defaults:\n"
            "  pythn: {cpu: 1}\n"
            "pool: 1\n")
    with pytest.raises(PoolConfigError) as caught:
        parse_pools(text, "pools.yaml")
    problems = caught.value.problems
    joined = "\n".join(problems)
    assert "pools.yaml:3:" in joined and "capacity of 'cpu' must be a whole number" in joined
    assert "got -1" in joined
    assert "pools.yaml:4:5 pools[0].lables: unknown key 'lables'; did you mean 'labels'?" in joined
    assert "pool name 'bad name'" in joined
    assert "unknown tool kind 'pythn'; did you mean 'python'?" in joined
    assert "unknown key 'pool'; did you mean 'pools'?" in joined
    assert all(p.startswith("pools.yaml:") for p in problems)


def test_duplicate_pools_and_yaml_syntax_errors_are_located() -> None:
    with pytest.raises(PoolConfigError, match=r"duplicate pool name 'a'"):
        parse_pools("pools:\n  - {name: a, capacity: {cpu: 1}}\n  - {name: a, capacity: {cpu: 2}}\n")
    with pytest.raises(PoolConfigError, match=r"p.yaml:\d+:\d+ \(document\): YAML syntax error"):
        parse_pools("pools: [", "p.yaml")
    with pytest.raises(PoolConfigError, match="missing required key 'pools'"):
        parse_pools("defaults: {}\n")


def test_capacity_overrides_replace_or_add_on_the_default_pool(pools: PoolSet) -> None:
    assert parse_capacity_overrides("cpu=4, gpu=2") == {"cpu": 4, "gpu": 2}
    changed = pools.with_capacity({"cpu": 2, "http_slots": 3})
    assert changed.get("default").capacity == {"cpu": 2, "memory_mb": 16384, "pg_connections": 4,  # type: ignore[union-attr]
                                               "http_slots": 3}
    assert changed.get("gpu-big") == pools.get("gpu-big")
    for bad in ("cpu", "cpu=x", "cpu=-1", "pool=1", ""):
        with pytest.raises(ValueError):
            parse_capacity_overrides(bad)


def test_kind_defaults_apply_only_to_resources_some_pool_declares(pools: PoolSet) -> None:
    book = playbook("  - step: q\n    tool: {kind: postgres, command: select 1}\n"
                    "  - step: h\n    tool: {kind: http, url: http://x}\n"
                    "  - step: d\n    tool: {kind: duckdb, command: select 1}\n"
                    "  - step: n\n    tool: {kind: noop}\n")
    assert step_demand(book.step("q"), pools, book).units == {"pg_connections": 1}
    assert step_demand(book.step("h"), pools, book).units == {}  # no pool meters http_slots
    assert step_demand(book.step("d"), pools, book).units == {"cpu": 2, "memory_mb": 4096}  # from defaults:
    assert step_demand(book.step("n"), pools, book).units == {}


def test_spec_resources_override_the_kind_default_per_resource(pools: PoolSet) -> None:
    book = playbook("  - step: train\n    tool: {kind: python, code: x=1}\n"
                    "    spec: {resources: {gpu: 2, prefer: [h100, a100], require: [gpu], tokens: 3}}\n"
                    "  - step: light\n    tool: {kind: python, code: x=1}\n"
                    "    spec: {resources: {cpu: 0, pool: gpu-small}}\n")
    train = step_demand(book.step("train"), pools, book)
    assert train.units == {"cpu": 1, "gpu": 2, "tokens": 3}
    assert train.prefer == ("h100", "a100") and train.require == {"gpu"}
    light = step_demand(book.step("light"), pools, book)
    assert light.units == {} and light.pool == "gpu-small"


def test_a_pipeline_holds_the_largest_demand_of_its_tasks_and_workbook_calls_resolve(pools: PoolSet) -> None:
    book = playbook("  - step: p\n    tool:\n      - {name: a, kind: postgres, command: select 1}\n"
                    "      - {name: b, kind: python, code: x=1}\n"
                    "  - step: w\n    tool: {kind: workbook, name: job}\n",
                    extra="workbook:\n  - {name: job, tool: {kind: duckdb, command: select 1}}\n")
    assert step_demand(book.step("p"), pools, book).units == {"pg_connections": 1, "cpu": 1}
    assert step_demand(book.step("w"), pools, book).units == {"cpu": 2, "memory_mb": 4096}


def test_feasible_pools_honour_the_pool_the_labels_and_the_capacity(pools: PoolSet) -> None:
    names = lambda d: [p.name for p in feasible_pools(d, pools)]  # noqa: E731
    assert names(Demand("s", {"cpu": 4})) == ["default", "gpu-small", "gpu-big"]
    assert names(Demand("s", {"gpu": 1})) == ["gpu-small", "gpu-big"]
    assert names(Demand("s", {"gpu": 2})) == ["gpu-big"]
    assert names(Demand("s", {"cpu": 1}, require=frozenset({"h100"}))) == ["gpu-big"]
    assert names(Demand("s", {"cpu": 1}, pool="gpu-small")) == ["gpu-small"]
    demand = Demand("s", {"gpu": 1}, prefer=("h100", "a100"))
    assert [preference_penalty(demand, p) for p in pools] == [2, 1, 0]


def test_an_impossible_demand_names_the_missing_capacity(pools: PoolSet) -> None:
    small = parse_pools("pools:\n  - {name: default, capacity: {cpu: 4}}\n"
                        "  - {name: gpu-small, labels: [gpu], capacity: {cpu: 8, gpu: 1}}\n")
    assert infeasibility_reason(Demand("train", {"gpu": 2}), small) == (
        "step 'train' needs gpu: 2 but the largest gpu capacity is 1 (pool 'gpu-small')")
    assert infeasibility_reason(Demand("q", {"pg_connections": 1}), small) == (
        "step 'q' needs pg_connections: 1 but no pool has any pg_connections capacity "
        "(pools: 'default', 'gpu-small')")
    assert "asks for pool 'tpu' but no such pool" in str(infeasibility_reason(Demand("s", pool="tpu"), pools))
    assert "requires labels tpu" in str(infeasibility_reason(
        Demand("s", require=frozenset({"tpu"})), pools))
    assert "pool 'default' has no gpu capacity" in str(infeasibility_reason(
        Demand("s", {"gpu": 1}, pool="default"), pools))
    both = parse_pools("pools:\n  - {name: a, capacity: {cpu: 8, gpu: 0}}\n"
                       "  - {name: b, capacity: {cpu: 1, gpu: 2}}\n")
    assert "at once but no single pool has all of it" in str(infeasibility_reason(
        Demand("s", {"cpu": 4, "gpu": 1}), both))
    assert infeasibility_reason(Demand("s", {"cpu": 1}), pools) is None
