"""The console's pure parts: the graph's layers, the timeline's bars, the overlay diff, and which paths a
sign-in may lead to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_plane.console.diff import overlay_diff
from control_plane.console.graph import layout
from control_plane.console.timeline import CHART_W, LABEL_W, build
from control_plane.errors import InvalidArgumentError
from control_plane.services.sessions import console_path, csrf_matches, csrf_token, is_console_path
from engine.protocol.events import Event

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _event(seq: int, type_: str, ms: float, step: str | None = None, **fields: object) -> Event:
    return Event(event_id=f"e{seq}", idempotency_key=f"k{seq}", execution_id="1", type=type_,  # type: ignore[arg-type]
                 step=step, seq=seq, timestamp=T0 + timedelta(milliseconds=ms), **fields)  # type: ignore[arg-type]


def test_steps_are_laid_out_in_layers_from_the_entry_and_a_cycle_does_not_move_a_step() -> None:
    graph = layout([("start", [("fetch", False)]), ("fetch", [("store", True), ("start", False)]),
                    ("store", []), ("orphan", [])], {"start": "succeeded", "fetch": "failed"})
    x = {n.name: n.x for n in graph.nodes}
    assert x["start"] < x["fetch"] < x["store"] < x["orphan"]
    assert {n.name: n.status for n in graph.nodes} == {"start": "succeeded", "fetch": "failed",
                                                       "store": "not run", "orphan": "not run"}
    arcs = {(e.source, e.target): (e.conditional, e.back) for e in graph.edges}
    assert arcs == {("start", "fetch"): (False, False), ("fetch", "store"): (True, False),
                    ("fetch", "start"): (False, True)}
    assert all(n.x + n.width <= graph.width and n.y + n.height <= graph.height for n in graph.nodes)


def test_an_arc_to_an_unknown_step_is_left_out_of_the_graph() -> None:
    graph = layout([("a", [("ghost", False)])], {})
    assert graph.edges == [] and [n.name for n in graph.nodes] == ["a"]


def test_the_timeline_draws_each_step_and_loop_item_from_its_events() -> None:
    events = [_event(1, "execution.started", 0), _event(2, "step.started", 0, "a"),
              _event(3, "step.succeeded", 100, "a"), _event(4, "step.started", 100, "b"),
              _event(5, "loop.item.succeeded", 150, "b", loop_index=0, duration_ms=50.0),
              _event(6, "task.attempt.failed", 160, "b", loop_index=1),
              _event(7, "loop.item.failed", 200, "b", loop_index=1),
              _event(8, "step.failed", 200, "b"), _event(9, "execution.failed", 200)]
    timeline = build(events, T0 + timedelta(seconds=60))
    bars = {b.label: b for b in timeline.bars}
    assert timeline.span_ms == 200.0  # ended: the clock does not stretch it
    assert bars["a"].status == "succeeded" and bars["a"].x == LABEL_W and bars["a"].width == CHART_W / 2
    assert bars["b [0]"].item and bars["b [0]"].x == LABEL_W + CHART_W / 2  # started = end - duration
    assert bars["b [1]"].status == "failed" and bars["b [1]"].failed_attempts == 1
    assert bars["b"].status == "failed"


def test_a_running_step_runs_until_now() -> None:
    timeline = build([_event(1, "step.started", 0, "slow")], T0 + timedelta(seconds=1))
    assert timeline.bars[0].status == "running" and timeline.span_ms == 1000.0
    assert timeline.bars[0].width == CHART_W


def test_the_overlay_diff_marks_changed_lines() -> None:
    lines = overlay_diff({"pool": "cpu", "timeout_s": 5}, {"pool": "cpu", "timeout_s": 9})
    assert [(d.kind, d.text.strip()) for d in lines if d.kind != "same"] == [
        ("removed", '"timeout_s": 5'), ("added", '"timeout_s": 9')]
    assert ("same", '"pool": "cpu",') in [(d.kind, d.text.strip()) for d in lines]


@pytest.mark.parametrize("path", ["/ui", "/ui/executions", "/ui/proposals?state=proposed",
                                  "/ui/executions/123#events"])
def test_console_paths_are_where_a_sign_in_may_lead(path: str) -> None:
    assert is_console_path(path) and console_path(path) == path


@pytest.mark.parametrize("path", ["https://evil.example/ui", "//evil.example/ui", "/\\evil.example",
                                  "/ui/../api", "/uix", "ui", "/ui//x", "/ui/\x00", "/ui/a b",
                                  "javascript:alert(1)", "/api/tokens", "/ui/" + "a" * 1000])
def test_anything_else_is_refused(path: str) -> None:
    assert not is_console_path(path)
    with pytest.raises(InvalidArgumentError, match="is not a path of the console"):
        console_path(path)


def test_no_path_leads_to_the_executions() -> None:
    assert console_path(None) == console_path("") == "/ui/executions"


def test_the_csrf_token_belongs_to_one_session_and_does_not_reveal_its_id() -> None:
    token = csrf_token("session-a")
    assert "session-a" not in token and csrf_matches("session-a", token)
    assert not csrf_matches("session-b", token) and not csrf_matches("session-a", None)
