"""The approval workflow: only the machine's transitions, four eyes, who and why on every one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies.errors import FourEyesError, WorkflowError
from policies.model import Actor, Proposal
from policies.workflow import ALLOWED, TERMINAL, allowed, transition

AUTHOR = Actor(id="token:a1", name="alice")
OTHER = Actor(id="token:b2", name="bob")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def proposal(state: str = "proposed") -> Proposal:
    return Proposal.model_validate({
        "id": "p1", "kind": "change", "target": {"path": "x", "step": "s"}, "change": {"timeout_s": 9},
        "rationale": "r", "author": AUTHOR.id, "author_name": AUTHOR.name, "risk": "low", "state": state,
        "created_at": NOW, "updated_at": NOW})


def test_the_machine() -> None:
    assert ALLOWED["proposed"] == {"approved", "rejected", "expired"}
    assert ALLOWED["approved"] == {"applied"}
    assert ALLOWED["applied"] == {"verified", "rolled_back"}
    assert ALLOWED["verified"] == {"rolled_back"}
    assert TERMINAL == {"rejected", "expired", "rolled_back"}
    assert allowed(None, "proposed") and not allowed(None, "applied")


@pytest.mark.parametrize(("start", "to"), [
    ("proposed", "applied"), ("proposed", "verified"), ("approved", "rejected"), ("rejected", "approved"),
    ("expired", "approved"), ("rolled_back", "applied"), ("applied", "approved"), ("verified", "applied")])
def test_transitions_outside_the_machine_are_refused(start: str, to: str) -> None:
    with pytest.raises(WorkflowError, match=f"cannot become {to}"):
        transition(proposal(start), to, actor=OTHER, why="because", at=NOW)


def test_every_transition_records_who_and_why() -> None:
    approved = transition(proposal(), "approved", actor=OTHER, why="  looks right ", at=NOW)
    applied = transition(approved, "applied", actor=OTHER, why="on approval", at=NOW)
    assert applied.state == "applied" and approved.state == "approved"
    assert [(t.from_state, t.to_state, t.who, t.who_name, t.why) for t in applied.transitions] == [
        ("proposed", "approved", "token:b2", "bob", "looks right"), ("approved", "applied", "token:b2", "bob",
                                                                    "on approval")]
    with pytest.raises(WorkflowError, match="needs a reason"):
        transition(proposal(), "rejected", actor=OTHER, why="  ", at=NOW)


@pytest.mark.parametrize("to", ["approved", "rejected"])
def test_four_eyes_the_author_may_not_decide(to: str) -> None:
    with pytest.raises(FourEyesError, match="four eyes"):
        transition(proposal(), to, actor=AUTHOR, why="mine", at=NOW)
    with pytest.raises(FourEyesError):  # another token of the same person (same name)
        transition(proposal(), to, actor=Actor(id="token:zz", name="alice"), why="mine", at=NOW)
    assert transition(proposal(), to, actor=OTHER, why="theirs", at=NOW).state == to


def test_the_author_may_still_do_what_is_not_a_decision() -> None:
    applied = transition(proposal("applied"), "rolled_back", actor=AUTHOR, why="undo mine", at=NOW)
    assert applied.state == "rolled_back"
