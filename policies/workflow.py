"""The approval workflow as an explicit state machine: PURE.

    proposed -> approved | rejected | expired
    approved -> applied
    applied  -> verified | rolled_back
    verified -> rolled_back

Every transition is recorded with who and why. Four eyes: the author of a proposal may not approve or
reject it (two actors with the same name count as one person). A rollback proposal follows the same
machine: approving it applies it, and its `applied` rolls the change it undoes back.
"""

from __future__ import annotations

from datetime import datetime

from policies.errors import FourEyesError, WorkflowError
from policies.model import Actor, Proposal, Transition

ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset({"proposed"}),
    "proposed": frozenset({"approved", "rejected", "expired"}),
    "approved": frozenset({"applied"}),
    "applied": frozenset({"verified", "rolled_back"}),
    "verified": frozenset({"rolled_back"}),
    "rejected": frozenset(),
    "expired": frozenset(),
    "rolled_back": frozenset(),
}
DECISIONS = frozenset({"approved", "rejected"})  # the transitions four eyes guards
TERMINAL = frozenset(state for state, targets in ALLOWED.items() if state is not None and not targets)


def allowed(from_state: str | None, to_state: str) -> bool:
    return to_state in ALLOWED.get(from_state, frozenset())


def transition(proposal: Proposal, to_state: str, *, actor: Actor, why: str, at: datetime) -> Proposal:
    """The proposal in `to_state` with the transition recorded; WorkflowError or FourEyesError when the
    machine or four eyes forbids it."""
    why = why.strip()
    if not why:
        raise WorkflowError(f"moving proposal {proposal.id} to '{to_state}' needs a reason",
                            where=f"proposal {proposal.id}", fix="say why (--reason TEXT)")
    if not allowed(proposal.state, to_state):
        choices = sorted(ALLOWED.get(proposal.state, frozenset()))
        raise WorkflowError(f"proposal {proposal.id} is {proposal.state}: it cannot become {to_state}",
                            where=f"proposal {proposal.id}",
                            fix=f"from {proposal.state} it can become {', '.join(choices)}" if choices
                            else f"{proposal.state} is final")
    if to_state in DECISIONS and actor.same_person(proposal.author, proposal.author_name):
        verb = "approve" if to_state == "approved" else "reject"
        raise FourEyesError(f"'{actor.name}' proposed {proposal.id} and may not {verb} it (four eyes)",
                            where=f"proposal {proposal.id}",
                            fix="ask an approver other than the author "
                                f"({proposal.author_name or proposal.author})")
    step = Transition(from_state=proposal.state, to_state=to_state, who=actor.id,  # type: ignore[arg-type]
                      who_name=actor.name, why=why, at=at)
    return proposal.model_copy(update={"state": to_state, "updated_at": at,
                                       "transitions": [*proposal.transitions, step]})
