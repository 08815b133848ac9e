"""Insight tools: why did an execution fail (the diagnosis), which past failures look like it, and which
past failures look like a text."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from mcp_server.api import Api
from mcp_server.tools.base import READ, Out
from mcp_server.tools.executions import ExecutionId


class Evidence(Out):
    event_id: str | None = None
    fact: str


class SuggestedFix(Out):
    kind: str
    description: str
    change: dict[str, Any] = Field(default_factory=dict, description="a patch in the playbook language's "
                                                                     "keys, or a command to run")


class FailureMatch(Out):
    """A past failure that resembles this one, and what happened next."""

    execution_id: str
    step: str | None = None
    playbook_path: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    score: float = 0.0
    occurred_at: str | None = None
    next: dict[str, Any] = Field(default_factory=dict, description="what happened next: "
                                 "retried_and_succeeded, later_run_succeeded, later_execution_id, ...")


class Diagnosis(Out):
    """Why an execution failed (or was slow), with the evidence and what to change."""

    execution_id: str
    playbook_path: str | None = None
    status: str | None = None
    failed_step: str | None = None
    root_cause_step: str | None = Field(default=None, description="may be upstream of failed_step")
    root_cause_type: str | None = None
    transience: str | None = Field(default=None, description="transient, intermittent or permanent")
    confidence: float = 0.0
    summary: str
    error_message: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    similar_failures: list[FailureMatch] = Field(default_factory=list)
    suggested_fixes: list[SuggestedFix] = Field(default_factory=list)
    evidence_gaps: list[str] = Field(default_factory=list)


class FailureMatches(Out):
    items: list[FailureMatch]


class InsightsReport(Out):
    """Per playbook and step over a window: durations and trends, queueing, retry and failure rates; the
    bottlenecks; anomalies with their reasons; failure clusters with the release they came in."""

    path: str | None = None
    since: str
    until: str
    executions: int
    outcomes: dict[str, int]
    steps: list[dict[str, Any]]
    bottlenecks: list[dict[str, Any]]
    anomalies: list[dict[str, Any]]
    clusters: list[dict[str, Any]]


def register(server: MCPServer, api: Api) -> None:
    @server.tool(annotations=READ)
    async def why_failed(ctx: Context, execution_id: ExecutionId) -> Diagnosis:
        """Why did this execution fail: the failed step, the root-cause step and type, whether it is
        transient, the evidence (events), similar past failures and suggested fixes."""
        async with api.tool(ctx) as client:
            return Diagnosis.model_validate(await client.diagnosis(execution_id))

    @server.tool(annotations=READ)
    async def similar_failures(
            ctx: Context, execution_id: ExecutionId,
            step: Annotated[str | None, Field(description="the failed step (default: the "
                                                          "execution's)")] = None,
            limit: Annotated[int, Field(ge=1, le=100)] = 5) -> FailureMatches:
        """Past failures nearest to this execution's failure, best first, with what happened after each."""
        async with api.tool(ctx) as client:
            return FailureMatches.model_validate(await client.similar(execution_id, step=step, limit=limit))

    @server.tool(annotations=READ)
    async def search_failures(
            ctx: Context,
            text: Annotated[str, Field(min_length=1, max_length=2000, description="an error message or a "
                                                                                  "description")],
            limit: Annotated[int, Field(ge=1, le=100)] = 10) -> FailureMatches:
        """Past failures nearest to a free text (an error message, a description), best first."""
        async with api.tool(ctx) as client:
            return FailureMatches.model_validate(await client.search(text, limit=limit))

    @server.tool(annotations=READ)
    async def insights(
            ctx: Context,
            path: Annotated[str | None, Field(description="one playbook's catalog path (default: all)")]
            = None,
            since: Annotated[str | None, Field(description="a span such as 7d, 24h, 90m, or an ISO 8601 "
                                                           "time (default: 7d)")] = None,
            limit: Annotated[int, Field(ge=1, le=200)] = 20) -> InsightsReport:
        """Which steps got slower, which dominate their executions (bottlenecks), which runs are out of
        their own history (anomalies, with the reason) and which failures are one problem seen many
        times (clusters, with the playbook version or policy change after which each first appeared)."""
        async with api.tool(ctx) as client:
            return InsightsReport.model_validate(await client.insights(path, since, limit))
