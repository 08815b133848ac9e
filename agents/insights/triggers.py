"""The triggers' side of the insights: per trigger, how many firings started, and why the others did not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_OUTCOMES = {"trigger.started": "started", "trigger.skipped": "skipped", "trigger.queued": "queued",
             "trigger.failed": "failed"}


def trigger_figures(rows: Iterable[dict[str, Any]], *, top: int = 20) -> list[dict[str, Any]]:
    """Rows of (trigger_id, path, kind, name, type, reason, count) folded per trigger; the triggers whose
    firings most often did not start come first (skipped and failed), each with its reasons by count."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        outcome = _OUTCOMES.get(str(row.get("type")))
        if outcome is None:
            continue
        entry = found.setdefault(row["trigger_id"], {
            "trigger_id": row["trigger_id"], "path": row.get("path"), "kind": row.get("kind"),
            "name": row.get("name"), "started": 0, "skipped": 0, "queued": 0, "failed": 0, "reasons": {}})
        count = int(row.get("count") or 0)
        entry[outcome] += count
        if outcome in ("skipped", "failed") and row.get("reason"):
            reasons: dict[str, int] = entry["reasons"]
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + count
    figures = []
    for entry in found.values():
        reasons = sorted(entry["reasons"].items(), key=lambda item: (-item[1], item[0]))
        figures.append({**entry, "reasons": [{"reason": r, "count": c} for r, c in reasons[:5]]})
    figures.sort(key=lambda e: (-(e["skipped"] + e["failed"]), -e["started"], str(e["trigger_id"])))
    return figures[:top]
