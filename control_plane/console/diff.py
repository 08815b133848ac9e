"""A proposal's change as a line diff of the step's overlay before and after it (pure: no I/O)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.apply import merged
from policies.model import Proposal


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "added", "removed", "same"
    text: str


def overlay_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[DiffLine]:
    """Every line of the two overlays as sorted JSON, marked added, removed or the same."""
    old = _lines(before)
    new = _lines(after)
    out: list[DiffLine] = []
    for line in difflib.ndiff(old, new):
        tag, text = line[:2], line[2:]
        if tag == "+ ":
            out.append(DiffLine("added", text))
        elif tag == "- ":
            out.append(DiffLine("removed", text))
        elif tag == "  ":
            out.append(DiffLine("same", text))
    return out


def _lines(overlay: Mapping[str, Any]) -> list[str]:
    return json.dumps(dict(overlay), indent=2, sort_keys=True, default=str).splitlines()


def overlays_of(proposal: Proposal, versions: Sequence[Mapping[str, Any]], active: Mapping[str, Any],
                undone: Proposal | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The step's overlay before and after the proposal: for an undecided change, the active overlay and
    the active one with the change laid over it; once applied, the versions it went from and to; for a
    rollback, the active overlay and the one before the change it undoes (`undone`). `versions` are the
    step's overlay versions ({"version", "overlay"}) and `active` its active overlay."""
    by_version = {int(v["version"]): dict(v["overlay"] or {}) for v in versions}
    if proposal.applied_version is not None:
        after = by_version.get(proposal.applied_version, dict(proposal.overlay or {}))
        return by_version.get(proposal.base_version or 0, {}), after
    if proposal.kind == "change" and proposal.change is not None:
        return dict(active), merged(active, proposal.change)
    if undone is not None:
        return dict(active), by_version.get(undone.base_version or 0, {})
    return dict(active), dict(active)
