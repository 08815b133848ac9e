"""The states of a proposal in the approval workflow (policies.model).

A module of its own, with no third-party imports, so that the command line can name them in `--help`
without loading the models."""

from __future__ import annotations

from typing import Literal, get_args

ProposalState = Literal["proposed", "approved", "rejected", "applied", "verified", "rolled_back", "expired"]
PROPOSAL_STATES: tuple[str, ...] = get_args(ProposalState)
OPEN_STATES: tuple[str, ...] = ("proposed", "approved", "applied")  # a step with one takes no other change
