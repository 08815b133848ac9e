"""Execution tools: execute (operator, optionally waiting for the end), status, list, events (paged),
cancel (operator)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BeforeValidator, Field

from control_plane.client import NoetlClient
from mcp_server.api import Api
from mcp_server.tools.base import READ, WRITE, Out
from mcp_server.tools.catalog import PlaybookPath, Version


def _id_text(value: Any) -> Any:
    """An execution id given as a JSON number (ids are 64-bit integers, spec 13) is read as its digits."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


ExecutionId = Annotated[str, BeforeValidator(_id_text), Field(
    min_length=1, max_length=200, description="the execution's id (its digits): '2241043291894150228'")]
CANCEL = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                         open_world_hint=False)
MAX_WAIT_S = 600.0
_POLL_S = (0.05, 0.1, 0.2, 0.5)  # the pause between status reads while waiting, growing to the last


class StepView(Out):
    status: str
    result: Any = None
    error: Any = None
    attempts: int = 0


class ExecutionSummary(Out):
    execution_id: str
    path: str
    version: int
    status: str = Field(description="pending, running, completed, failed or cancelled")
    created_at: str | None = None
    ended_at: str | None = None
    parent_execution_id: str | None = None


class ExecutionView(ExecutionSummary):
    """An execution with its per-step state."""

    result: Any = None
    error: Any = None
    steps: dict[str, StepView] = Field(default_factory=dict)
    ended: bool = Field(default=False, description="whether the execution has ended")


class ExecuteResult(ExecutionView):
    waited: bool = Field(default=False, description="whether the call waited for the end")
    timed_out: bool = Field(default=False, description="it waited `timeout_s` and the execution still runs")


class ExecutionPage(Out):
    items: list[ExecutionSummary]
    next_cursor: str | None = Field(default=None, description="pass back as `cursor` for the next page")


class EventItem(Out):
    seq: int | None = None
    type: str
    step: str | None = None
    timestamp: str | None = None


class EventPage(Out):
    items: list[EventItem]
    next_after_seq: int | None = Field(default=None, description="pass back as `after_seq` for the next "
                                                                 "page; null when no more are stored")


class Cancelling(Out):
    execution_id: str
    status: str


def view(doc: dict[str, Any]) -> ExecutionView:
    return ExecutionView.model_validate({**doc, "ended": doc.get("ended_at") is not None})


async def wait_ended(client: NoetlClient, execution_id: str, timeout_s: float) -> tuple[dict[str, Any], bool]:
    """The execution once it has ended (or as it is after `timeout_s`), and whether it ended."""
    deadline = time.monotonic() + timeout_s
    polls = 0
    while True:
        doc = await client.execution(execution_id)
        if doc.get("ended_at") is not None:
            return doc, True
        if time.monotonic() >= deadline:
            return doc, False
        await asyncio.sleep(min(_POLL_S[min(polls, len(_POLL_S) - 1)], max(0.0, deadline - time.monotonic())))
        polls += 1


def register(server: MCPServer, api: Api) -> None:
    @server.tool(annotations=WRITE)
    async def execute_playbook(
            ctx: Context, path: PlaybookPath, version: Version = None,
            payload: Annotated[dict[str, Any] | None, Field(description="merged into the playbook's "
                                                                        "workload")] = None,
            wait: Annotated[bool, Field(description="wait for the execution to end")] = False,
            timeout_s: Annotated[float, Field(gt=0, le=MAX_WAIT_S, description="how long to wait")] = 60.0,
    ) -> ExecuteResult:
        """Start an execution of a registered playbook (operator); with `wait`, return once it has ended
        (or after `timeout_s`, still running) with its status, result, error and steps."""
        async with api.tool(ctx) as client:
            started = await client.execute(path, version=version, payload=payload)
            execution_id = str(started["execution_id"])
            if not wait:
                return ExecuteResult.model_validate({**started, "ended": False})
            doc, ended = await wait_ended(client, execution_id, timeout_s)
        return ExecuteResult.model_validate({**doc, "ended": ended, "waited": True, "timed_out": not ended})

    @server.tool(annotations=READ)
    async def get_execution(ctx: Context, execution_id: ExecutionId) -> ExecutionView:
        """An execution's status, result or error, and the state of each of its steps."""
        async with api.tool(ctx) as client:
            return view(await client.execution(execution_id))

    @server.tool(annotations=READ)
    async def list_executions(
            ctx: Context,
            path: Annotated[str | None, Field(description="only this playbook's")] = None,
            status: Annotated[str | None, Field(description="pending, running, completed, failed or "
                                                            "cancelled")] = None,
            limit: Annotated[int, Field(ge=1, le=500)] = 20,
            cursor: Annotated[str | None, Field(description="`next_cursor` of the previous page")] = None,
    ) -> ExecutionPage:
        """Executions, newest first, a page at a time."""
        async with api.tool(ctx) as client:
            return ExecutionPage.model_validate(await client.executions(path=path, status=status, limit=limit,
                                                                        cursor=cursor))

    @server.tool(annotations=READ)
    async def list_events(
            ctx: Context, execution_id: ExecutionId,
            after_seq: Annotated[int, Field(ge=0, description="only events after this seq")] = 0,
            limit: Annotated[int, Field(ge=1, le=1000)] = 50) -> EventPage:
        """An execution's events in order, a page at a time (pass `next_after_seq` back as `after_seq`)."""
        async with api.tool(ctx) as client:
            page = await client.events(execution_id, after_seq=after_seq, limit=limit)
        return EventPage.model_validate(page)

    @server.tool(annotations=CANCEL)
    async def cancel_execution(ctx: Context, execution_id: ExecutionId) -> Cancelling:
        """Cancel a running execution (operator); an execution that already ended is refused."""
        async with api.tool(ctx) as client:
            return Cancelling.model_validate(await client.cancel(execution_id))
