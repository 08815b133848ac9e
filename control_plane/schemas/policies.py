"""Proposals' and policies' requests and answers (docs/policies.md): a proposal is answered as the
policies package's own model, so the API and the library show one shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from control_plane.schemas.base import RequestModel
from policies.model import OverlayChange, Proposal, Target


class ProposalRequest(RequestModel):
    """A change to one step's runtime overlay; the author is the token that sends it."""

    target: Target
    change: OverlayChange | None = Field(default=None, description="the overlay fields to set (not for a "
                                                                   "rollback)")
    kind: Literal["change", "rollback"] = "change"
    rollback_of: str | None = Field(default=None, min_length=1, max_length=200,
                                    description="for a rollback: the change it undoes")
    rationale: str = Field(min_length=1, max_length=4000, pattern=r"\S")
    diagnosis: dict[str, Any] | None = Field(default=None, description="the diagnosis it came from")
    evidence: list[str] = Field(default_factory=list, max_length=200, description="execution or event ids")
    transience: Literal["transient", "intermittent", "permanent"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> ProposalRequest:
        if self.kind == "change" and (self.change is None or self.rollback_of is not None):
            raise ValueError("a change proposal needs 'change' and no 'rollback_of'")
        if self.kind == "rollback" and (self.change is not None or self.rollback_of is None):
            raise ValueError("a rollback proposal names 'rollback_of' and carries no 'change'")
        return self


class DecisionRequest(RequestModel):
    reason: str = Field(min_length=1, max_length=2000, pattern=r"\S", description="why (recorded)")


class RollbackRequest(RequestModel):
    reason: str = Field(default="rolled back through the API", min_length=1, max_length=2000, pattern=r"\S")


class ProposalList(BaseModel):
    items: list[Proposal]


class OverlayVersionInfo(BaseModel):
    version: int
    overlay: dict[str, Any]
    proposal_id: str | None
    restores: int | None
    created_by: str
    reason: str
    created_at: datetime


class StepPolicy(BaseModel):
    step: str
    active_version: int | None
    overlay: dict[str, Any] = Field(description="the active overlay ({} after a rollback to none)")
    proposal_id: str | None
    versions: list[OverlayVersionInfo]


class PolicyView(BaseModel):
    path: str
    step: str | None
    steps: list[StepPolicy]
