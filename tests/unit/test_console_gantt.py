"""The console's plan chart (control_plane/console/gantt.py): slots per pool, bars on the time axis, round
axis marks, and the tasks read from a real plan."""

from __future__ import annotations

from control_plane.console.gantt import (
    AXIS_H,
    CHART_W,
    LABEL_W,
    MAX_BARS,
    MIN_BAR_W,
    ROW_H,
    Planned,
    build,
    duration_label,
    planned_tasks,
    tick_step,
)
from engine.plan.demands import Demand
from engine.plan.planner import solve_problem
from engine.plan.pools import Pool, PoolSet
from engine.plan.problem import TaskSpec, make_problem


def test_tasks_that_overlap_on_a_pool_take_separate_slots_and_a_slot_freed_at_a_start_is_reused() -> None:
    tasks = [Planned("a", 0, "cpu", 0, 100), Planned("a", 1, "cpu", 0, 50),
             Planned("b", None, "cpu", 50, 100), Planned("c", None, "gpu", 100, 200)]
    chart = build(tasks, ["cpu", "gpu", "idle"])
    lanes = {b.label: (b.pool, b.lane) for b in chart.bars}
    assert lanes == {"a [1]": ("cpu", 0), "a [0]": ("cpu", 1), "b": ("cpu", 0), "c": ("gpu", 0)}
    assert [(r.label, r.first) for r in chart.rows] == [("cpu · slot 1", True), ("cpu · slot 2", False),
                                                        ("gpu", True), ("idle", True)]
    rows_y = {(r.pool, r.lane): r.y for r in chart.rows}
    assert all(b.y == rows_y[(b.pool, b.lane)] for b in chart.bars)
    assert chart.height == AXIS_H + 4 * ROW_H + 4


def test_bars_sit_on_the_time_axis_from_zero_to_the_makespan() -> None:
    chart = build([Planned("first", None, "p", 0, 250), Planned("second", None, "p", 250, 1000)], ["p"])
    bars = {b.label: b for b in chart.bars}
    assert chart.makespan_ms == 1000
    assert bars["first"].x == LABEL_W and bars["first"].width == CHART_W / 4
    second = bars["second"]
    assert second.x == LABEL_W + CHART_W / 4 and second.x + second.width == LABEL_W + CHART_W
    assert bars["second"].title == "second on p: 250–1000 ms (750 ms)"
    assert chart.ticks[0] == (LABEL_W, "0 ms") and chart.ticks[-1] == (LABEL_W + CHART_W, "1 s")


def test_a_task_of_no_time_still_gets_a_visible_bar_and_a_narrow_bar_no_text() -> None:
    chart = build([Planned("instant", None, "p", 0, 0), Planned("a_long_step_name", None, "p", 0, 10_000)],
                  ["p"])
    bars = {b.label: b for b in chart.bars}
    assert bars["instant"].width == MIN_BAR_W and bars["instant"].text == ""
    assert bars["a_long_step_name"].text == "a_long_step_name"
    narrow = build([Planned("a_long_step_name", None, "p", 0, 60), Planned("x", None, "p", 60, 1000)], ["p"])
    cut = next(b for b in narrow.bars if b.label == "a_long_step_name")
    assert cut.text.endswith("…") and len(cut.text) < len(cut.label)


def test_the_axis_marks_are_round_and_cover_the_plan() -> None:
    assert tick_step(1000) == 200 and tick_step(7300) == 2000 and tick_step(45) == 10 and tick_step(0) == 1
    chart = build([Planned("s", None, "p", 0, 7300)], ["p"])
    assert [label for _, label in chart.ticks] == ["0 ms", "2 s", "4 s", "6 s"]
    assert [duration_label(ms) for ms in (500, 1500, 180_000)] == ["500 ms", "1.5 s", "3 min"]


def test_a_plan_of_thousands_of_tasks_shows_the_first_ones_and_counts_the_rest() -> None:
    tasks = [Planned("loop", i, "p", i, i + 1) for i in range(MAX_BARS + 7)]
    chart = build(tasks, ["p"])
    assert len(chart.bars) == MAX_BARS and chart.hidden == 7
    assert {b.label for b in chart.bars} == {f"loop [{i}]" for i in range(MAX_BARS)}


def test_the_chart_of_a_solved_plan_puts_each_task_where_the_planner_scheduled_it() -> None:
    pools = PoolSet((Pool("small", frozenset(), {"cpu": 2}),
                     Pool("big", frozenset({"gpu"}), {"cpu": 4, "gpu": 1})))
    specs = [TaskSpec("extract", Demand("extract", {"cpu": 1}), 100.0),
             *(TaskSpec("transform", Demand("transform", {"cpu": 1}), 300.0, i) for i in range(4)),
             TaskSpec("train", Demand("train", {"gpu": 1}), 500.0)]
    edges = [(0, k) for k in range(1, 5)] + [(k, 5) for k in range(1, 5)]
    plan = solve_problem(make_problem(specs, edges, pools), max_solve_s=1.0)
    tasks = planned_tasks(plan)
    chart = build(tasks, pools.names)
    assert chart.makespan_ms == plan.makespan_ms
    by_label = {b.label: b for b in chart.bars}
    assert set(by_label) == {"extract", "train", *(f"transform [{i}]" for i in range(4))}
    for task in plan.problem.tasks:
        label = task.step if task.loop_index is None else f"{task.step} [{task.loop_index}]"
        bar = by_label[label]
        assert bar.pool == pools.names[plan.schedule.pools[task.id]]
        assert (bar.start_ms, bar.end_ms) == (plan.schedule.starts[task.id],
                                              plan.schedule.starts[task.id] + task.duration_ms)
    assert by_label["train"].pool == "big"  # the only pool with a gpu
    for pool in pools.names:  # no two bars of one slot overlap in time
        spans: dict[int, list[tuple[int, int]]] = {}
        for bar in chart.bars:
            if bar.pool == pool:
                spans.setdefault(bar.lane, []).append((bar.start_ms, bar.end_ms))
        for lane in spans.values():
            lane.sort()
            assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(lane, lane[1:], strict=False))
