"""From a compiled playbook to the scheduling problem: tasks, loops, precedence, durations."""

from __future__ import annotations

from engine.net.net import Net
from engine.net.validate import validate_text
from engine.plan.decompose import cut_tasks, split
from engine.plan.pools import PoolSet, parse_pools
from engine.plan.problem import Problem, problem_from_net

DEFAULT = PoolSet.default()


def net(steps: str, extra: str = "") -> Net:
    text = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: t}}\n{extra}workflow:\n{steps}"
    result = validate_text(text)
    assert result.net is not None, [d.format() for d in result.diagnostics]
    return result.net


def tasks_of(problem: Problem, step: str) -> list[int]:
    return [t.id for t in problem.tasks if t.step == step]


def edges_between(problem: Problem, a: str, b: str) -> set[tuple[int, int]]:
    first, second = set(tasks_of(problem, a)), set(tasks_of(problem, b))
    return {(x, y) for x, y in problem.edges if x in first and y in second}


JOIN = """\
  - step: start
    tool: {kind: noop}
    next: {spec: {mode: inclusive}, arcs: [{step: a}, {step: b}]}
  - step: a
    tool: {kind: python, code: x=1}
    next: {arcs: [{step: merge}]}
  - step: b
    tool: {kind: http, url: http://x}
    next: {arcs: [{step: merge}]}
  - step: merge
    tool: {kind: python, code: x=1}
"""


def test_a_join_starts_after_all_of_its_predecessors() -> None:
    problem = problem_from_net(net(JOIN), DEFAULT)
    assert [t.step for t in problem.tasks] == ["start", "a", "b", "merge"]
    assert set(problem.edges) == {(0, 1), (0, 2), (1, 3), (2, 3)}
    assert problem.durations == (1, 1000, 500, 1000)  # per-kind defaults
    assert set(problem.duration_sources.values()) == {"default"}


def test_durations_given_for_a_step_replace_the_kind_default() -> None:
    problem = problem_from_net(net(JOIN), DEFAULT, durations={"a": 2500.4, "merge": 10})
    assert problem.durations == (1, 2501, 500, 10)
    assert problem.duration_sources["a"] == "history" and problem.duration_sources["b"] == "default"


def test_exclusive_branches_are_all_planned_and_said_so() -> None:
    problem = problem_from_net(net("""\
  - step: route
    tool: {kind: noop}
    next: {arcs: [{step: hot, when: "{{ workload.x }}"}, {step: cold}]}
  - step: hot
    tool: {kind: noop}
  - step: cold
    tool: {kind: noop}
"""), DEFAULT)
    assert {t.step for t in problem.tasks} == {"route", "hot", "cold"}
    assert any("every arc is planned as taken" in n for n in problem.notes)


LOOPS = """\
  - step: fan
    loop: {in: "{{ workload.items }}", iterator: x, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, code: x=1}
    next: {arcs: [{step: seq}]}
  - step: seq
    loop: {in: [1, 2, 3], iterator: y}
    tool: {kind: python, code: x=1}
    next: {arcs: [{step: later}]}
  - step: later
    loop: {in: "{{ fan }}", iterator: z}
    tool: {kind: python, code: x=1}
"""


def test_loops_with_known_items_expand_and_keep_their_mode() -> None:
    problem = problem_from_net(net(LOOPS, "workload: {items: [a, b, c, d, e]}\n"), DEFAULT)
    fan, seq = tasks_of(problem, "fan"), tasks_of(problem, "seq")
    assert [problem.tasks[i].loop_index for i in fan] == [0, 1, 2, 3, 4]
    # max_in_flight 2: two lanes, item i+2 after item i
    assert {(a, b) for a, b in problem.edges if a in fan and b in fan} == {
        (fan[0], fan[2]), (fan[1], fan[3]), (fan[2], fan[4])}
    # sequential: a chain
    chain = {(a, b) for a, b in problem.edges if a in seq and b in seq}
    assert chain == {(seq[0], seq[1]), (seq[1], seq[2])}
    # every item of a loop waits for every item of the loop before it
    assert edges_between(problem, "fan", "seq") == {(a, b) for a in fan for b in seq}
    # items known only at run time: one task, and a note
    (later,) = tasks_of(problem, "later")
    assert problem.tasks[later].loop_index == 0
    assert any("loop 'later'" in n for n in problem.notes)


def test_the_payload_decides_loop_items_and_an_empty_loop_is_a_task_of_no_time() -> None:
    book = net(LOOPS, "workload: {items: [a]}\n")
    assert len(tasks_of(problem_from_net(book, DEFAULT, payload={"items": list(range(7))}), "fan")) == 7
    empty = problem_from_net(book, DEFAULT, payload={"items": []})
    (only,) = tasks_of(empty, "fan")
    assert empty.tasks[only].duration_ms == 0 and empty.tasks[only].units == {}
    assert edges_between(empty, "fan", "seq")  # the loop still orders what follows it


def test_a_template_loop_over_the_workload_expands() -> None:
    problem = problem_from_net(net("""\
  - step: sq
    loop: {in: "{{ range(workload.n) | list }}", iterator: x, spec: {mode: parallel}}
    tool: {kind: python, code: x=1}
""", "workload: {n: 4}\n"), DEFAULT)
    assert len(problem.tasks) == 4 and not problem.edges


def test_a_cycle_is_planned_once_and_the_final_step_runs_last() -> None:
    problem = problem_from_net(net("""\
  - step: poll
    tool: {kind: python, code: x=1}
    next: {arcs: [{step: done, when: "{{ poll.ready }}"}, {step: poll}]}
  - step: done
    tool: {kind: noop}
  - step: side
    tool: {kind: noop}
  - step: cleanup
    tool: {kind: noop}
""", "executor: {spec: {final_step: cleanup}}\n"), DEFAULT)
    assert [t.step for t in problem.tasks] == ["poll", "done", "cleanup"]  # 'side' is unreachable
    assert any("poll -> poll" in n for n in problem.notes) and any("unreachable" in n for n in problem.notes)
    cleanup = tasks_of(problem, "cleanup")[0]
    assert {a for a, b in problem.edges if b == cleanup} == {0, 1}
    problem.topological_order()  # acyclic


def test_steps_no_pool_can_run_are_listed_with_the_reason() -> None:
    pools = parse_pools("pools: [{name: default, capacity: {cpu: 2}}]")
    problem = problem_from_net(net("""\
  - step: train
    tool: {kind: python, code: x=1}
    spec: {resources: {gpu: 1}}
"""), pools)
    assert problem.unsatisfiable == {"train": "step 'train' needs gpu: 1 but no pool has any gpu capacity "
                                              "(pools: 'default')"}


def test_fractional_units_are_counted_in_thousandths() -> None:
    problem = problem_from_net(net("""\
  - step: a
    tool: {kind: python, code: x=1}
    spec: {resources: {cpu: 0.5}}
"""), DEFAULT)
    assert problem.scale == {"cpu": 1000}
    assert problem.demand[0] == (500,) and problem.capacity[0] == (4000,)


def test_joins_every_branch_meets_cut_the_problem_into_parts() -> None:
    problem = problem_from_net(net(JOIN), DEFAULT)
    assert cut_tasks(problem) == [0, 3]
    assert split(problem) == [[0], [1, 2], [3]]
