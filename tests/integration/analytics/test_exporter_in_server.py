"""`noetl server start` runs the exporter when NOETL_EXPORT_DIR (or NOETL_CLICKHOUSE_URL) is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from control_plane.services.exports import ExportFeed
from control_plane.stack import Stack
from tests.harness.polling import poll
from tests.integration.runtime.conftest import client, register, spawn  # noqa: F401 - fixtures

pytestmark = pytest.mark.anyio


async def test_the_server_exports_what_the_runtime_appends(
        client: Stack, spawn: Any, runtime_env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    assert client.executions is not None and client.store is not None
    path = await register(client, """\
        workflow:
          - step: work
            tool: {kind: python, code: "result = {'answer': 42}"}
        """)
    runtime_env["NOETL_EXPORT_DIR"] = str(tmp_path / "export")
    spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    spawn("worker", "start", "--concurrency", "2")
    execution_id = await client.executions.start(path)
    assert (await client.executions.wait(execution_id, timeout_s=60))["status"] == "completed"

    def exported() -> bool:
        folder = tmp_path / "export" / "executions"
        if not folder.exists():
            return False
        rows = ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pylist()
        return [r["execution_id"] for r in rows] == [execution_id]

    await poll(exported, timeout_s=60, what="the server's exporter to write the execution")
    status = await ExportFeed(client.store).status("analytics")
    assert status.sinks == [f"parquet {tmp_path / 'export'}"] and status.last_error is None
