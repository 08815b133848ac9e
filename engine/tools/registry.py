"""The tools a worker owns, by kind: built once, started with the worker, closed with it.

`workbook` and `playbook` are not here: the runtime runs those itself (they run other steps).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType

import httpx

from engine.errors import EngineError
from engine.tools.base import Tool
from engine.tools.clickhouse_tool import ClickhouseTool
from engine.tools.duckdb_tool import DuckdbTool
from engine.tools.http_tool import HttpTool
from engine.tools.nats_tool import NatsTool
from engine.tools.noop_tool import NoopTool
from engine.tools.postgres_tool import PostgresTool
from engine.tools.python_pool import DEFAULT_MEMORY_LIMIT, PythonPool
from engine.tools.python_tool import PythonTool
from engine.tools.shell_tool import ShellTool
from engine.tools.snowflake_tool import SnowflakeTool

log = logging.getLogger(__name__)

RUNTIME_KINDS = ("workbook", "playbook")


class UnknownToolError(EngineError, LookupError):
    code = "unknown_tool"


class ToolRegistry:
    """kind → tool instance. Owns the python process pool and the shared HTTP client.

    Deployment settings reach the tools here: `nats_url` is the deployment's own NATS (the worker's bus),
    used by the nats tool when a step names no `auth`. `python_pool_size` is the most python interpreters
    running at once (a worker passes its concurrency); `python_warm` of them start with the registry
    (default: all), the rest on first demand."""

    def __init__(self, *, python_pool_size: int = 2, python_warm: int | None = None,
                 python_memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT,
                 http_client: httpx.AsyncClient | None = None,
                 extra: Mapping[str, Tool] | None = None, nats_url: str | None = None) -> None:
        self.python_pool = PythonPool(python_pool_size, memory_limit_bytes=python_memory_limit_bytes,
                                      warm=python_warm)
        self._tools: dict[str, Tool] = {}
        self._extra = dict(extra or {})
        self.nats_url = nats_url or None
        self._build(http_client)

    def _build(self, http_client: httpx.AsyncClient | None) -> None:
        from engine.tools.qdrant_tool import QdrantTool  # ~1 s to import: only where tools are built

        tools: list[Tool] = [
            PythonTool(self.python_pool), HttpTool(http_client), PostgresTool(), DuckdbTool(),
            ClickhouseTool(), QdrantTool(), ShellTool(), NoopTool(), SnowflakeTool(),
            NatsTool(self.nats_url),
        ]
        self._tools = {tool.kind: tool for tool in tools}
        self._tools.update(self._extra)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._tools))

    def get(self, kind: str) -> Tool:
        tool = self._tools.get(kind)
        if tool is not None:
            return tool
        if kind in RUNTIME_KINDS:
            raise UnknownToolError(f"'{kind}' is run by the runtime, not by a tool",
                                   where=f"tool kind '{kind}'")
        raise UnknownToolError(f"no tool of kind '{kind}'", where=f"tool kind '{kind}'",
                               fix=f"use one of {', '.join(self.kinds)}")

    async def start(self) -> None:
        """Start the python processes (the other tools connect on first use)."""
        await self.python_pool.start()

    async def close(self) -> None:
        """Stop the python processes and close every client the tools keep."""
        await self.python_pool.close()
        for tool in self._tools.values():
            close = getattr(tool, "close", None)
            if close is None:  # an http client passed in is closed by its owner, not by HttpTool
                continue
            try:
                await close()
            except Exception:  # closing must go on for the others
                log.exception("closing the %s tool failed", tool.kind)

    async def __aenter__(self) -> ToolRegistry:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
