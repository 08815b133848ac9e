"""Keychain scopes across executions (spec 10): the entries a step resolves and those a child inherits.

A `shared` entry belongs to the execution that declares it and reaches every execution it starts with a
playbook call, and theirs in turn. An inherited entry carries `owner`: the id of the execution that
declared it (its tokens are kept under that id, so the parent and its children mint one) and, when the
entry has templates, that execution's workload (its templates render in the owner's context, not the
child's). `local` (the default) and `global` entries stay in the execution that declares them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Entry = Mapping[str, Any]


def visible_entries(own: Sequence[Entry], inherited: Sequence[Entry]) -> list[dict[str, Any]]:
    """What a step of this execution resolves: the inherited entries none of its own replaces (by name),
    first, so that its own entries may read them, then its own."""
    if not inherited:
        return [dict(entry) for entry in own]
    names = {entry.get("name") for entry in own}
    return [dict(entry) for entry in inherited if entry.get("name") not in names] + [dict(e) for e in own]


def inherited_by_child(own: Sequence[Entry], inherited: Sequence[Entry], execution_id: str,
                       workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What a child started by this execution inherits: the shared entries this execution sees (those
    it inherited and did not replace, keeping their owner; then its own, owned by it)."""
    names = {entry.get("name") for entry in own}
    out = [dict(entry) for entry in inherited if entry.get("name") not in names]
    for entry in own:
        if entry.get("scope") == "shared":
            owner: dict[str, Any] = {"execution_id": execution_id}
            if _templated(entry):
                owner["workload"] = dict(workload)
            out.append({**entry, "owner": owner})
    return out


def _templated(entry: Entry) -> bool:
    text = json.dumps(entry, default=str)
    return "{{" in text or "{%" in text
