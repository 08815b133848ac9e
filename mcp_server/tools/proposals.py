"""Proposal tools: list, get, propose a change or a rollback (operator).

An assistant can only *propose* (DESIGN principle 4): the change goes through the guardrails, and its
author is the caller's token, which the API never lets approve its own proposal. There is no approve,
reject or roll-back tool: those are a person's decision (`noetl proposals approve`, or the REST API with
an approver's token).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field, field_validator

from mcp_server.api import Api
from mcp_server.tools.base import READ, WRITE, Out
from mcp_server.tools.catalog import PlaybookPath
from policies.model import OverlayChange

ProposalId = Annotated[str, Field(min_length=1, max_length=200, description="the proposal's id")]
StepName = Annotated[str, Field(min_length=1, max_length=300, description="the step of the playbook")]
Rationale = Annotated[str, Field(min_length=1, max_length=4000, description="why: what it fixes, on what "
                                                                            "evidence")]


class TargetView(Out):
    path: str
    step: str


class TransitionView(Out):
    from_state: str | None = None
    to_state: str
    who: str
    who_name: str | None = None
    why: str
    at: str


class ProposalView(Out):
    id: str
    kind: str = "change"
    target: TargetView
    change: dict[str, Any] | None = None
    rollback_of: str | None = None
    rationale: str
    author: str
    author_name: str | None = None
    risk: str | None = None
    state: str = Field(description="proposed (pending approval), approved, rejected, applied, verified, "
                                   "rolled_back or expired")
    created_at: str | None = None
    updated_at: str | None = None
    applied_version: int | None = None
    measurement: dict[str, Any] | None = None
    transitions: list[TransitionView] = Field(default_factory=list)

    @field_validator("change")
    @classmethod
    def _set_fields_only(cls, change: dict[str, Any] | None) -> dict[str, Any] | None:
        return {k: v for k, v in change.items() if v is not None} if change is not None else None


class ProposalList(Out):
    items: list[ProposalView]


def register(server: MCPServer, api: Api) -> None:
    @server.tool(annotations=READ)
    async def list_proposals(
            ctx: Context,
            state: Annotated[str | None, Field(description="a state, or several separated by commas, e.g. "
                                                           "'proposed'")] = None,
            path: Annotated[str | None, Field(description="only this playbook's")] = None,
            step: Annotated[str | None, Field(description="only this step's")] = None,
            limit: Annotated[int, Field(ge=1, le=1000)] = 50) -> ProposalList:
        """Configuration-change proposals, newest first."""
        async with api.tool(ctx) as client:
            return ProposalList.model_validate(await client.proposals(state=state, path=path, step=step,
                                                                      limit=limit))

    @server.tool(annotations=READ)
    async def get_proposal(ctx: Context, proposal_id: ProposalId) -> ProposalView:
        """One proposal: its change, rationale, risk, state, measured effect and every transition."""
        async with api.tool(ctx) as client:
            return ProposalView.model_validate(await client.proposal(proposal_id))

    @server.tool(annotations=WRITE)
    async def propose_change(
            ctx: Context, path: PlaybookPath, step: StepName, change: OverlayChange, rationale: Rationale,
            diagnosis: Annotated[dict[str, Any] | None, Field(description="the diagnosis it came from "
                                                                          "(why_failed's answer)")] = None,
            evidence: Annotated[list[str] | None, Field(description="execution or event ids")] = None,
            transience: Annotated[Literal["transient", "intermittent", "permanent"] | None,
                                  Field(description="the failure's, as diagnosed")] = None,
    ) -> ProposalView:
        """Propose a change to one step's runtime overlay (retry, timeout_s, pool, prefer, require,
        max_in_flight) (operator). It is checked against the guardrails (a refusal names every rule it
        breaks) and then waits, `proposed`, for a person with the approver role: never its author."""
        body: dict[str, Any] = {"target": {"path": path, "step": step}, "change": change.overlay(),
                                "rationale": rationale}
        if diagnosis is not None:
            body["diagnosis"] = diagnosis
        if evidence:
            body["evidence"] = evidence
        if transience is not None:
            body["transience"] = transience
        async with api.tool(ctx) as client:
            return ProposalView.model_validate(await client.propose(body))

    @server.tool(annotations=WRITE)
    async def propose_rollback(ctx: Context, proposal_id: ProposalId, rationale: Rationale) -> ProposalView:
        """Propose rolling back an applied change (operator): a person with the approver role decides."""
        async with api.tool(ctx) as client:
            target = (await client.proposal(proposal_id))["target"]
            return ProposalView.model_validate(await client.propose(
                {"kind": "rollback", "rollback_of": proposal_id, "target": target, "rationale": rationale}))
