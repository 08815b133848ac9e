"""A plan as a per-pool Gantt chart for the console's SVG: a row per slot of each pool (tasks that overlap
in time on one pool take separate slots), a bar per task on a time axis (pure: no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.plan.planner import Plan

LABEL_W, CHART_W, ROW_H, AXIS_H, RIGHT = 170.0, 640.0, 22.0, 26.0, 40.0
MAX_BARS = 400  # a plan of thousands of loop items shows its first ones; the table under it says so
MIN_BAR_W = 2.0
CHAR_W = 6.5  # about one character of the bar text, to decide how much of a label fits in a bar


@dataclass(frozen=True, slots=True)
class Planned:
    """One task of a plan: a step run or a loop item, its pool, and when it starts and ends (ms)."""

    step: str
    loop_index: int | None
    pool: str
    start_ms: int
    end_ms: int
    resources: Mapping[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.step if self.loop_index is None else f"{self.step} [{self.loop_index}]"


@dataclass(frozen=True, slots=True)
class Row:
    pool: str
    lane: int  # the pool's slot, from 0
    label: str
    y: float
    first: bool  # the pool's first slot (a line separates pools)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    pool: str
    lane: int
    x: float
    y: float
    width: float
    start_ms: int
    end_ms: int
    text: str  # as much of the label as fits inside the bar ("" when none does)
    title: str  # what a tooltip (and a screen reader) says


@dataclass(frozen=True, slots=True)
class Gantt:
    rows: list[Row]
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # x and label of the axis marks
    width: float
    height: float
    makespan_ms: int
    hidden: int = 0  # tasks left out past MAX_BARS


def planned_tasks(plan: Plan) -> list[Planned]:
    """The tasks of a plan with their pools, starts and ends (as `noetl plan --json` lists them)."""
    names, schedule = plan.problem.pools.names, plan.schedule
    return [Planned(t.step, t.loop_index, names[schedule.pools[t.id]], schedule.starts[t.id],
                    schedule.starts[t.id] + t.duration_ms, dict(t.units)) for t in plan.problem.tasks]


def tick_step(span_ms: float, target: int = 5) -> float:
    """A round interval (1, 2 or 5 times a power of ten, in ms) giving about `target` marks over `span_ms`."""
    raw = max(span_ms, float(target)) / target  # at least 1 ms apart
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def duration_label(ms: float) -> str:
    if ms < 1000:
        return f"{ms:g} ms"
    if ms < 120_000:
        return f"{ms / 1000:g} s"
    return f"{ms / 60_000:g} min"


def _fit(label: str, width: float) -> str:
    room = int((width - 6) // CHAR_W)
    if room >= len(label):
        return label
    return label[:room - 1] + "…" if room >= 3 else ""


def build(tasks: Sequence[Planned], pools: Sequence[str]) -> Gantt:
    """Rows for every pool in `pools` order (a pool with nothing planned keeps one empty row), each task
    in the first slot of its pool that is free at its start (tasks in start order), the axis from 0 to
    the makespan with round marks."""
    ordered = sorted(tasks, key=lambda t: (t.start_ms, t.end_ms, t.step, t.loop_index or 0))
    shown, hidden = ordered[:MAX_BARS], max(len(ordered) - MAX_BARS, 0)
    makespan = max((t.end_ms for t in tasks), default=0)
    span = float(max(makespan, 1))
    names = list(pools) + sorted({t.pool for t in shown} - set(pools))
    lanes: dict[str, list[int]] = {name: [] for name in names}  # pool -> each slot's last end
    placed: list[tuple[Planned, int]] = []
    for task in shown:
        ends = lanes[task.pool]
        lane = next((i for i, end in enumerate(ends) if end <= task.start_ms), len(ends))
        if lane == len(ends):
            ends.append(task.end_ms)
        else:
            ends[lane] = task.end_ms
        placed.append((task, lane))
    rows: list[Row] = []
    first_row: dict[str, int] = {}
    for name in names:
        first_row[name] = len(rows)
        count = max(len(lanes[name]), 1)
        for lane in range(count):
            label = name if count == 1 else f"{name} · slot {lane + 1}"
            rows.append(Row(name, lane, label, AXIS_H + len(rows) * ROW_H, lane == 0))
    bars = []
    for task, lane in placed:
        x = LABEL_W + task.start_ms / span * CHART_W
        width = max((task.end_ms - task.start_ms) / span * CHART_W, MIN_BAR_W)
        width = min(width, LABEL_W + CHART_W - x) if x < LABEL_W + CHART_W else MIN_BAR_W
        resources = ", ".join(f"{r} {u:g}" for r, u in task.resources.items())
        title = (f"{task.label} on {task.pool}: {task.start_ms}–{task.end_ms} ms "
                 f"({task.end_ms - task.start_ms} ms{', ' + resources if resources else ''})")
        bars.append(Bar(task.label, task.pool, lane, x, AXIS_H + (first_row[task.pool] + lane) * ROW_H, width,
                        task.start_ms, task.end_ms, _fit(task.label, width), title))
    step = tick_step(span)
    ticks = [(LABEL_W + k * step / span * CHART_W, duration_label(k * step))
             for k in range(int(span // step) + 1)]
    return Gantt(rows=rows, bars=bars, ticks=ticks, width=LABEL_W + CHART_W + RIGHT,
                 height=AXIS_H + max(len(rows), 1) * ROW_H + 4, makespan_ms=makespan, hidden=hidden)
