"""The policies package's errors (the guardrails return violations; the service turns them into a 409)."""

from __future__ import annotations

from engine.errors import NoetlError


class PolicyError(NoetlError):
    """Base of every error the policies package raises on purpose."""

    code = "policy_error"


class WorkflowError(PolicyError):
    """A transition the workflow does not allow from the proposal's state."""

    code = "invalid_transition"


class FourEyesError(PolicyError):
    """The author of a proposal may not approve or reject it."""

    code = "four_eyes"
