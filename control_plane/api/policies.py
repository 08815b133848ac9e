"""/api/proposals and /api/policies: propose (operator; the author is the token), approve, reject and roll
back (approver; never the author's own proposal), list and show (viewer), the active overlays (viewer)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from control_plane.api.auth import require
from control_plane.api.context import built_with, services_of
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.policies import (
    DecisionRequest,
    PolicyView,
    ProposalList,
    ProposalRequest,
    RollbackRequest,
)
from control_plane.services.auth import TokenInfo
from control_plane.services.policies import PolicyService
from policies.model import Actor, Proposal

router = APIRouter(tags=["proposals"], route_class=AuthorizedRoute)

ProposalId = Annotated[str, Path(min_length=1, max_length=200, description="the proposal's id")]


def actor_of(info: TokenInfo) -> Actor:
    """The token as an actor: four eyes compares token ids, and names (one person, one name)."""
    return Actor(id=f"token:{info.token_id}", name=info.name)


def _service(request: Request) -> PolicyService:
    return built_with(services_of(request).policies, "policies")


@router.get("/api/proposals", response_model=ProposalList, summary="Proposals, newest first",
            responses=responses(400, 401, 403, 422, 503))
async def list_proposals(
        request: Request, _: Annotated[Any, require("viewer")],
        state: Annotated[str | None, Query(max_length=200, description="a state, or several separated by "
                                                                       "commas")] = None,
        path: Annotated[str | None, Query(max_length=1000)] = None,
        step: Annotated[str | None, Query(max_length=300)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> ProposalList:
    states = [s.strip() for s in state.split(",") if s.strip()] if state else None
    items = await _service(request).list(state=states or None, path=path, step=step, limit=limit)
    return ProposalList(items=items)


@router.get("/api/proposals/{id}", response_model=Proposal, summary="One proposal with its transitions",
            responses=responses(401, 403, 404, 422, 503))
async def get_proposal(request: Request, _: Annotated[Any, require("viewer")], id: ProposalId) -> Proposal:
    return await _service(request).get(id)


@router.post("/api/proposals", status_code=201, response_model=Proposal,
             summary="Propose a change to a step's overlay (checked against the guardrails)",
             responses=responses(400, 401, 403, 409, 413, 415, 422, 503))
async def propose(request: Request, token: Annotated[TokenInfo, require("operator")],
                  body: ProposalRequest) -> Proposal:
    return await _service(request).propose(body.model_dump(exclude_none=True, by_alias=True), actor_of(token))


@router.post("/api/proposals/{id}/approve", response_model=Proposal,
             summary="Approve and apply a proposal (not one's own)",
             responses=responses(400, 401, 403, 404, 409, 413, 415, 422, 503))
async def approve(request: Request, token: Annotated[TokenInfo, require("approver")], id: ProposalId,
                  body: DecisionRequest) -> Proposal:
    return await _service(request).approve(id, actor_of(token), body.reason)


@router.post("/api/proposals/{id}/reject", response_model=Proposal,
             summary="Reject a proposal (not one's own)",
             responses=responses(400, 401, 403, 404, 409, 413, 415, 422, 503))
async def reject(request: Request, token: Annotated[TokenInfo, require("approver")], id: ProposalId,
                 body: DecisionRequest) -> Proposal:
    return await _service(request).reject(id, actor_of(token), body.reason)


@router.post("/api/proposals/{id}/rollback", response_model=Proposal,
             summary="Roll an applied change back: the step's previous overlay version is active again",
             responses=responses(400, 401, 403, 404, 409, 413, 415, 422, 503))
async def rollback(request: Request, token: Annotated[TokenInfo, require("approver")], id: ProposalId,
                   body: RollbackRequest | None = None) -> Proposal:
    reason = body.reason if body is not None else RollbackRequest().reason
    return await _service(request).rollback(id, actor_of(token), reason)


@router.get("/api/policies", response_model=PolicyView,
            summary="The active overlay of a playbook's steps and every version of it",
            responses=responses(401, 403, 404, 422, 503))
async def policies(request: Request, _: Annotated[Any, require("viewer")],
                   path: Annotated[str, Query(min_length=1, max_length=1000)],
                   step: Annotated[str | None, Query(max_length=300)] = None) -> PolicyView:
    return PolicyView.model_validate(await _service(request).policies(path, step))
