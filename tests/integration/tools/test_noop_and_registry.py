"""The noop tool and the registry that owns every tool of a worker."""

from __future__ import annotations

import pytest

from engine.tools.noop_tool import NoopTool
from engine.tools.registry import ToolRegistry, UnknownToolError
from engine.tools.snowflake_tool import SnowflakeTool

from .conftest import TEST_MEMORY_LIMIT, make_call

pytestmark = pytest.mark.anyio


async def test_noop_returns_its_result_or_an_empty_object() -> None:
    assert (await NoopTool().run(make_call("noop", {"result": {"a": [1]}}))).data == {"a": [1]}
    assert (await NoopTool().run(make_call("noop", {}))).data == {}
    assert (await NoopTool().run(make_call("noop", {"result": 0}))).data == 0


async def test_the_registry_serves_every_stateless_kind_and_runs_them() -> None:
    async with ToolRegistry(python_pool_size=1, python_memory_limit_bytes=TEST_MEMORY_LIMIT) as tools:
        assert set(tools.kinds) == {"python", "http", "postgres", "duckdb", "clickhouse", "qdrant", "shell",
                                    "noop", "snowflake", "nats"}
        python = await tools.get("python").run(make_call("python", {"code": "return 6 * 7"}))
        duck = await tools.get("duckdb").run(make_call("duckdb", {"command": "SELECT 1 AS one"}))
        assert python.data == 42 and duck.data["rows"] == [{"one": 1}]


def test_an_unknown_kind_names_the_known_ones() -> None:
    tools = ToolRegistry(python_pool_size=1)
    with pytest.raises(UnknownToolError) as caught:
        tools.get("ftp")
    assert "ftp" in str(caught.value) and "python" in str(caught.value) and "qdrant" in str(caught.value)


def test_workbook_and_playbook_are_left_to_the_runtime() -> None:
    tools = ToolRegistry(python_pool_size=1)
    for kind in ("workbook", "playbook"):
        with pytest.raises(UnknownToolError, match="run by the runtime"):
            tools.get(kind)


async def test_snowflake_without_its_driver_fails_with_the_install_command() -> None:
    try:
        import snowflake.connector  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the Snowflake connector is installed here; this checks the missing-driver path")
    env = await SnowflakeTool().run(make_call("snowflake", {"command": "SELECT 1", "auth": "sf"}))
    assert env.status == "error" and env.error is not None
    assert env.error.kind == "validation" and "pip install 'noetl[snowflake]'" in env.error.message
