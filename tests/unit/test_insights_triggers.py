"""The insights' trigger figures: per trigger, firings started, and why the others did not start."""

from __future__ import annotations

from agents.insights.triggers import trigger_figures


def test_triggers_whose_firings_did_not_start_come_first_with_their_reasons_by_count() -> None:
    rows = [
        {"trigger_id": "a", "path": "p", "kind": "interval", "name": None, "type": "trigger.started",
         "reason": None, "count": 9},
        {"trigger_id": "b", "path": "q", "kind": "cron", "name": "n", "type": "trigger.started",
         "reason": None, "count": 2},
        {"trigger_id": "b", "path": "q", "kind": "cron", "name": "n", "type": "trigger.skipped",
         "reason": "still running", "count": 3},
        {"trigger_id": "b", "path": "q", "kind": "cron", "name": "n", "type": "trigger.failed",
         "reason": "playbook gone", "count": 1},
        {"trigger_id": "b", "path": "q", "kind": "cron", "name": "n", "type": "trigger.fired", "reason": None,
         "count": 6},
    ]
    first, second = trigger_figures(rows)
    assert first["trigger_id"] == "b" and (first["started"], first["skipped"], first["failed"]) == (2, 3, 1)
    assert first["reasons"] == [{"reason": "still running", "count": 3},
                                {"reason": "playbook gone", "count": 1}]
    assert second["trigger_id"] == "a" and second["started"] == 9 and second["reasons"] == []


def test_no_rows_give_no_trigger_figures() -> None:
    assert trigger_figures([]) == []
