"""An execution's steps and loop items as bars on a time axis, from its events' timestamps (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.protocol.events import Event

LABEL_W, CHART_W, ROW_H, AXIS_H = 200.0, 620.0, 20.0, 24.0
MAX_ROWS = 300  # a loop of thousands of items shows its first ones; the events table has them all
_OUTCOMES = {"step.succeeded": "succeeded", "step.failed": "failed", "step.skipped": "skipped",
             "loop.item.succeeded": "succeeded", "loop.item.failed": "failed", "loop.completed": "succeeded"}


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    status: str  # succeeded, failed, skipped, running
    x: float
    y: float
    width: float
    title: str  # what a tooltip (and a screen reader) says
    item: bool  # a loop item's bar (indented under its step)
    failed_attempts: int


@dataclass(frozen=True, slots=True)
class Timeline:
    bars: list[Bar]
    width: float
    height: float
    span_ms: float
    ticks: list[tuple[float, str]]  # x and label of the axis marks
    hidden: int = 0  # rows left out past MAX_ROWS


@dataclass
class _Span:
    step: str
    run: int
    index: int | None
    start: datetime
    end: datetime | None = None
    status: str = "running"
    failed_attempts: int = 0


def build(events: Sequence[Event], now: datetime) -> Timeline:
    """Bars for each run of each step and each loop item, in the order they started; a span without an
    outcome yet runs until `now` (or the execution's last event when it ended)."""
    spans: dict[tuple[str, int, int | None], _Span] = {}
    first = min((e.timestamp for e in events), default=now)
    last = max((e.timestamp for e in events), default=now)
    ended = any(e.type in ("execution.completed", "execution.failed", "execution.cancelled") for e in events)
    for event in sorted(events, key=lambda e: (e.timestamp, e.seq or 0)):
        if event.step is None:
            continue
        key = (event.step, event.run or 1, event.loop_index)  # an item's events carry its index
        span = spans.get(key)
        if span is None:
            start = event.timestamp
            if event.duration_ms is not None and event.type in _OUTCOMES:
                start = event.timestamp - timedelta(milliseconds=event.duration_ms)
            span = spans[key] = _Span(event.step, key[1], key[2], start)
        if event.type == "task.attempt.failed":
            span.failed_attempts += 1
        outcome = _OUTCOMES.get(event.type)
        if outcome is not None and (event.type != "loop.completed" or span.status == "running"):
            span.end, span.status = event.timestamp, outcome
    finish = last if ended else max(now, last)
    span_ms = max((finish - first).total_seconds() * 1000.0, 1.0)
    ordered = sorted(spans.values(), key=lambda s: (s.start, s.index is not None, s.index or 0))
    shown, hidden = ordered[:MAX_ROWS], max(len(ordered) - MAX_ROWS, 0)
    bars = []
    for row, span in enumerate(shown):
        end = span.end or finish
        x = min(LABEL_W + (span.start - first).total_seconds() * 1000.0 / span_ms * CHART_W,
                LABEL_W + CHART_W - 2.0)
        width = max((end - span.start).total_seconds() * 1000.0 / span_ms * CHART_W, 2.0)
        label = span.step + (f" [{span.index}]" if span.index is not None else "") + (
            f" (run {span.run})" if span.run > 1 else "")
        took = (end - span.start).total_seconds() * 1000.0
        retries = f", {span.failed_attempts} failed attempt(s)" if span.failed_attempts else ""
        bars.append(Bar(label=label, status=span.status, x=x, y=AXIS_H + row * ROW_H,
                        width=min(width, LABEL_W + CHART_W - x), item=span.index is not None,
                        title=f"{label}: {span.status}, {took:.0f} ms{retries}",
                        failed_attempts=span.failed_attempts))
    ticks = [(LABEL_W + CHART_W * i / 4, f"{span_ms * i / 4:.0f} ms") for i in range(5)]
    return Timeline(bars=bars, width=LABEL_W + CHART_W + 40.0, height=AXIS_H + max(len(bars), 1) * ROW_H + 4,
                    span_ms=span_ms, ticks=ticks, hidden=hidden)
