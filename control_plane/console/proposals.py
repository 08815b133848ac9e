"""/ui/proposals: the queue, each change as a diff of the step's overlay; approve, reject and roll back
through the same PolicyService the REST API uses (the approver role and four eyes hold here too)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.responses import RedirectResponse

from control_plane.api.context import built_with, services_of
from control_plane.api.policies import actor_of
from control_plane.console.diff import overlay_diff, overlays_of
from control_plane.console.render import page
from control_plane.console.session import ConsoleRoute, Viewer, checked_form, viewer_of
from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.services.auth import check_role
from control_plane.services.policies import PolicyService
from control_plane.services.sessions import CONSOLE_ROOT
from policies.model import PROPOSAL_STATES, Proposal

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

DECIDER = "approver"  # the role that approves, rejects and rolls back (as /api/proposals/{id}/...)
DECISIONS = {"approve": "approved", "reject": "rejected", "rollback": "rolled back"}
PAGE_SIZE = 100
ProposalId = Annotated[str, Path(min_length=1, max_length=200)]


def policies_of(request: Request) -> PolicyService:
    return built_with(services_of(request).policies, "policies")


async def _view(service: PolicyService, proposal: Proposal, viewer: Viewer,
                steps: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    target = (proposal.target.path, proposal.target.step)
    if target not in steps:
        try:
            found = (await service.policies(*target))["steps"]
        except NotFoundError:  # the playbook left the catalog
            found = []
        steps[target] = found[0] if found else {"overlay": {}, "versions": []}
    step = steps[target]
    undone = await service.get(proposal.rollback_of) if proposal.rollback_of else None
    before, after = overlays_of(proposal, step["versions"], step["overlay"] or {}, undone)
    own = viewer_actor_is_author(viewer, proposal)
    decider = viewer.may(DECIDER)
    return {"p": proposal, "diff": overlay_diff(before, after), "own": own,
            "can_decide": decider and not own and proposal.state == "proposed",
            "can_rollback": decider and proposal.kind == "change"
            and proposal.state in ("applied", "verified")}


def viewer_actor_is_author(viewer: Viewer, proposal: Proposal) -> bool:
    """Four eyes as the service applies it: the same token, or the same name."""
    return actor_of(viewer.token).same_person(proposal.author, proposal.author_name)


@router.get(f"{CONSOLE_ROOT}/proposals")
async def proposals(request: Request, state: Annotated[str | None, Query(max_length=200)] = None,
                    done: Annotated[str | None, Query(max_length=40)] = None,
                    id: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    viewer = await viewer_of(request)
    service = policies_of(request)
    listed = await service.list(state=state or None, limit=PAGE_SIZE)
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    views = [await _view(service, p, viewer, steps) for p in listed]
    notice = f"Proposal {id} {DECISIONS[done]}." if done in DECISIONS and id else None
    return page("proposals.html", {"viewer": viewer, "active": "proposals", "proposals": views,
                                   "states": PROPOSAL_STATES, "state": state or "", "notice": notice,
                                   "decider": viewer.may(DECIDER)})


@router.post(f"{CONSOLE_ROOT}/proposals/{{id}}/{{decision}}")
async def decide(request: Request, id: ProposalId, decision: Annotated[str, Path(max_length=20)]) -> Response:
    viewer = await viewer_of(request)
    fields = await checked_form(request, viewer)
    if decision not in DECISIONS:
        raise InvalidArgumentError(f"unknown decision '{decision}'", where="URL",
                                   fix=f"one of {', '.join(DECISIONS)}")
    check_role(viewer.token, DECIDER)  # the buttons are hidden from weaker roles; refused here anyway
    service = policies_of(request)
    actor = actor_of(viewer.token)
    reason = fields.get("reason", "").strip()[:500] or f"{DECISIONS[decision]} in the web console"
    if decision == "approve":
        await service.approve(id, actor, reason)
    elif decision == "reject":
        await service.reject(id, actor, reason)
    else:
        await service.rollback(id, actor, reason)
    return RedirectResponse(f"{CONSOLE_ROOT}/proposals?{urlencode({'done': decision, 'id': id})}",
                            status_code=303)
