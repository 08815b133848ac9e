"""The clickhouse tool runs against the in-process chDB engine through clickhouse-connect's chdb:// DSN."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.protocol.results import ResultEnvelope
from engine.tools.clickhouse_tool import ClickhouseTool

from .conftest import StoredCredentials, make_call

pytestmark = pytest.mark.anyio


@pytest.fixture
async def clickhouse() -> AsyncIterator[ClickhouseTool]:
    tool = ClickhouseTool()
    yield tool
    await tool.close()


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


async def sql(tool: ClickhouseTool, config: dict[str, Any], **fields: Any) -> ResultEnvelope:
    return await tool.run(make_call("clickhouse", {"url": "chdb://", **config}, **fields))


async def test_statements_run_in_order_and_the_last_row_set_is_the_result(clickhouse: ClickhouseTool,
                                                                          table: str) -> None:
    env = await sql(clickhouse, {"command": f"CREATE TABLE {table} (id UInt32, name String) ENGINE = Memory;"
                                           f"INSERT INTO {table} VALUES (1, 'a;b'), (2, 'c\\'d');"
                                           f"SELECT id, name FROM {table} ORDER BY id;"
                                           f"SELECT count() AS n FROM {table} WHERE id > 5;"
                                           f"INSERT INTO {table} VALUES (3, 'e')"})
    assert env.status == "ok", env.error
    rows = [{"id": 1, "name": "a;b"}, {"id": 2, "name": "c'd"}]
    assert (env.data["rows"], env.data["row_count"], env.data["columns"]) == ([{"n": 0}], 1, ["n"])
    assert env.data["statement_count"] == 5
    assert env.data["command_2"] == {"rows": rows, "row_count": 2, "columns": ["id", "name"]}
    assert env.data["command_4"]["rows"] == [] and env.data["command_4"]["columns"] == []


async def test_ddl_only_gives_empty_rows(clickhouse: ClickhouseTool, table: str) -> None:
    env = await sql(clickhouse, {"command": [f"CREATE TABLE {table} (x Int8) ENGINE = Memory",
                                             f"DROP TABLE {table}"]})
    assert env.data == {"rows": [], "row_count": 0, "columns": [], "statement_count": 2,
                        "command_0": {"rows": [], "row_count": 0, "columns": []},
                        "command_1": {"rows": [], "row_count": 0, "columns": []}}


async def test_server_side_and_client_side_params_are_bound(clickhouse: ClickhouseTool) -> None:
    env = await sql(clickhouse, {"command": "SELECT {name:String} AS name, {n:UInt8} + 1 AS n",
                                 "params": {"name": "x'; DROP TABLE y; --", "n": 4}})
    assert env.data["rows"] == [{"name": "x'; DROP TABLE y; --", "n": 5}]
    env = await sql(clickhouse, {"command": "SELECT %(word)s AS word", "params": {"word": "it's"}})
    assert env.data["rows"] == [{"word": "it's"}]


async def test_values_are_converted_to_json_friendly_types(clickhouse: ClickhouseTool) -> None:
    env = await sql(clickhouse, {"command": "SELECT toDecimal64(1.5, 2) AS d, toDate('2024-01-02') AS day,"
                                            " toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS u,"
                                            " [1, 2] AS l, toIPv4('10.0.0.1') AS ip"})
    assert env.data["rows"] == [{"d": 1.5, "day": "2024-01-02", "u": "61f0c404-5cb3-11e7-907b-a6006ad3dba0",
                         "l": [1, 2], "ip": "10.0.0.1"}]


async def test_a_credential_can_carry_the_dsn(clickhouse: ClickhouseTool) -> None:
    creds = StoredCredentials({"ch": ("clickhouse", {"dsn": "chdb://"})})
    env = await clickhouse.run(make_call("clickhouse", {"command": "SELECT 1 AS one", "auth": "ch"},
                                         credentials=creds))
    assert env.data["rows"] == [{"one": 1}]


@pytest.mark.parametrize(("command", "kind", "code"), [
    ("SELEC 1", "sql_syntax", 62),
    ("SELECT * FROM no_such_table_here", "sql_syntax", 60),
    ("SELECT toUInt8('abc')", "validation", 6),
])
async def test_failures_are_classified_by_clickhouse_error_code(clickhouse: ClickhouseTool, command: str,
                                                                kind: str, code: int) -> None:
    env = await sql(clickhouse, {"command": command})
    assert env.status == "error" and env.error is not None
    assert env.error.kind == kind and env.error.code == code


async def test_no_target_is_a_validation_error(clickhouse: ClickhouseTool) -> None:
    env = await clickhouse.run(make_call("clickhouse", {"command": "SELECT 1"}))
    assert env.error is not None and env.error.kind == "validation" and "url" in env.error.message
