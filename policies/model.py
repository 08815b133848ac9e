"""What a configuration change is: a proposal to change the runtime overlay of one playbook step, its
state in the approval workflow, every transition with who and why, and the measured effect.

Validated at the edge (frozen pydantic models, no unknown keys): a proposal's change can only touch the
fields of an overlay (`engine.dsl.overlay.OVERLAY_FIELDS`), and its retry rule is a rule of the playbook
language itself (`engine.dsl.model.Rule`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.dsl.model import NAME_PATTERN, Rule
from engine.dsl.overlay import OVERLAY_FIELDS
from policies.states import OPEN_STATES, PROPOSAL_STATES, ProposalState

RiskTier = Literal["low", "medium", "high"]
ProposalKind = Literal["change", "rollback"]
Verdict = Literal["improved", "unchanged", "worse", "insufficient"]

LABEL_PATTERN = NAME_PATTERN
__all__ = ["OPEN_STATES", "OVERLAY_FIELDS", "PROPOSAL_STATES", "Actor", "Measurement", "OverlayChange",
           "Proposal", "ProposalDraft", "ProposalKind", "ProposalState", "RiskTier", "StepInfo", "StepStats",
           "Target", "Transition", "Verdict"]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Actor(Model):
    """Who acts: `id` is the identity four eyes compares (`token:<id>`, `local:<user>`, `agent:<name>`);
    `name` is what people read (a token's name). Two actors with the same name are the same person."""

    id: str = Field(min_length=1, max_length=300)
    name: str = Field(min_length=1, max_length=300)

    def same_person(self, other_id: str, other_name: str | None) -> bool:
        return self.id == other_id or (other_name is not None and self.name == other_name)


class Target(Model):
    path: str = Field(min_length=1, max_length=1000)
    step: str = Field(min_length=1, max_length=300)


class OverlayChange(Model):
    """A change to a step's runtime overlay: only these fields, each optional, at least one set."""

    retry: Rule | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    pool: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    prefer: list[str] | None = None
    require: list[str] | None = None
    max_in_flight: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> OverlayChange:
        if not self.fields():
            raise ValueError(f"a change sets at least one of {', '.join(OVERLAY_FIELDS)}")
        return self

    def fields(self) -> list[str]:
        return [name for name in OVERLAY_FIELDS if getattr(self, name) is not None]

    def overlay(self) -> dict[str, Any]:
        """The change as overlay JSON (only the fields it sets)."""
        out: dict[str, Any] = {}
        for name in self.fields():
            value = getattr(self, name)
            out[name] = value.model_dump(mode="json", by_alias=True, exclude_none=True) \
                if isinstance(value, BaseModel) else value
        return out


class Transition(Model):
    """One step of the workflow: every one is recorded, with who and why."""

    from_state: ProposalState | None
    to_state: ProposalState
    who: str
    who_name: str | None = None
    why: str
    at: datetime


class StepStats(Model):
    runs: int = 0  # executions in which the step ran to an outcome
    failures: int = 0
    failure_rate: float | None = None
    median_duration_ms: float | None = None


class Measurement(Model):
    """The change's effect: the step over the executions after it against those before it."""

    before: StepStats
    after: StepStats
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)
    executions_before: list[str] = Field(default_factory=list)
    executions_after: list[str] = Field(default_factory=list)
    measured_at: datetime | None = None


class ProposalDraft(Model):
    """What an author submits; the service adds the id, author, risk and state."""

    target: Target
    change: OverlayChange | None = None  # None only for a rollback
    kind: ProposalKind = "change"
    rollback_of: str | None = None
    rationale: str = Field(min_length=1, max_length=4000)
    diagnosis: dict[str, Any] | None = None  # the diagnosis the change came from (its JSON)
    evidence: list[str] = Field(default_factory=list, max_length=200)  # execution and event ids
    transience: Literal["transient", "intermittent", "permanent"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> ProposalDraft:
        if self.kind == "change" and (self.change is None or self.rollback_of is not None):
            raise ValueError("a change proposal needs 'change' and no 'rollback_of'")
        if self.kind == "rollback" and (self.change is not None or not self.rollback_of):
            raise ValueError("a rollback proposal names 'rollback_of' and carries no 'change'")
        return self

    @property
    def effective_transience(self) -> str | None:
        if self.transience is not None:
            return self.transience
        value = (self.diagnosis or {}).get("transience")
        return str(value) if value else None


class Proposal(Model):
    id: str
    kind: ProposalKind
    target: Target
    change: OverlayChange | None
    rollback_of: str | None = None
    rationale: str
    diagnosis: dict[str, Any] | None = None
    evidence: list[str] = Field(default_factory=list)
    transience: str | None = None
    author: str
    author_name: str | None = None
    risk: RiskTier
    state: ProposalState
    created_at: datetime
    updated_at: datetime
    base_version: int | None = None  # the step's overlay version when the change was applied
    applied_version: int | None = None  # the version the change (or the rollback) created
    applied_at: datetime | None = None
    overlay: dict[str, Any] | None = None  # the whole overlay the applied version holds
    measurement: Measurement | None = None
    rollback_id: str | None = None  # the rollback proposed for this change, if any
    transitions: list[Transition] = Field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class StepInfo(Model):
    """What the guardrails and the proposer know about the target step (read from the catalog's latest
    version with the step's active overlay applied)."""

    path: str
    step: str
    exists: bool = True
    has_loop: bool = False
    loop_parallel: bool = False
    max_in_flight: int | None = None
    timeout_s: float | None = None  # the effective limit of one attempt (step or tool, the smaller)
    pool: str = "default"
    needs: dict[str, float] = Field(default_factory=dict)  # resources the step holds: cpu, gpu, memory_mb
    overlay: dict[str, Any] = Field(default_factory=dict)  # the active overlay
    overlay_version: int | None = None
    durations_ms: list[float] = Field(default_factory=list)  # recent successful runs of the step
