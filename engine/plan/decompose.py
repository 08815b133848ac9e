"""Splitting a problem at its cut tasks: a playbook's join steps usually cut an execution in stages.

A task is a cut when every other task is its ancestor or its descendant (a join every branch meets).
Between two consecutive cuts lies a part that runs after the first has ended and before the second
starts, whatever the schedule: the parts are independent problems, and the optimal makespan is the sum
of theirs. Lower bounds add up the same way, which is much stronger than one bound over the whole
(a bound over the whole cannot see that stage 2 cannot use the capacity stage 1 leaves idle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.plan.problem import Problem, Task
from engine.plan.schedule import Schedule, make_schedule


def cut_tasks(problem: Problem) -> list[int]:
    """The cut tasks in execution order (empty when there is none or capacity is already held)."""
    n = problem.size
    if n < 3 or problem.occupied:
        return []
    order = problem.topological_order()
    ancestors = [0] * n
    for i in order:
        bits = 0
        for p in problem.preds[i]:
            bits |= ancestors[p] | (1 << p)
        ancestors[i] = bits
    descendants = [0] * n
    for i in reversed(order):
        bits = 0
        for s in problem.succs[i]:
            bits |= descendants[s] | (1 << s)
        descendants[i] = bits
    cuts = [i for i in order if ancestors[i].bit_count() + descendants[i].bit_count() + 1 == n]
    cuts.sort(key=lambda i: ancestors[i].bit_count())
    return cuts


def subproblem(problem: Problem, ids: Sequence[int]) -> Problem:
    """The tasks `ids` (in that order, renumbered from 0) with the edges among them."""
    index = {old: new for new, old in enumerate(ids)}
    tasks = tuple(Task(index[old], t.step, t.loop_index, t.units, t.duration_ms, t.options)
                  for old in ids for t in (problem.tasks[old],))
    edges = tuple((index[a], index[b]) for a, b in problem.edges if a in index and b in index)
    preds: list[list[int]] = [[] for _ in ids]
    succs: list[list[int]] = [[] for _ in ids]
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    return replace(problem, tasks=tasks, edges=edges, demand=tuple(problem.demand[i] for i in ids),
                   preds=tuple(map(tuple, preds)), succs=tuple(map(tuple, succs)), notes=(),
                   unsatisfiable={}, occupied=())


def split(problem: Problem) -> list[list[int]]:
    """The parts of `problem` in execution order (task ids); one part when it has no cut."""
    cuts = cut_tasks(problem)
    if not cuts:
        return [list(range(problem.size))]
    position = {c: k for k, c in enumerate(cuts)}
    # a non-cut task lies between the last cut before it and the first after it: count its cut ancestors
    order = problem.topological_order()
    stage = [0] * problem.size
    for i in order:
        stage[i] = max((stage[p] + (1 if p in position else 0) for p in problem.preds[i]), default=0)
    parts: list[list[int]] = [[] for _ in range(2 * len(cuts) + 1)]
    for i in order:
        if i in position:
            parts[2 * position[i] + 1].append(i)
        else:
            parts[2 * stage[i]].append(i)
    return [sorted(p) for p in parts if p]


def stitch(problem: Problem, parts: Sequence[Sequence[int]], schedules: Sequence[Schedule]) -> Schedule:
    """One schedule of the whole from the parts' schedules, each part starting when the previous ends."""
    starts = [0] * problem.size
    pools = [0] * problem.size
    offset = 0
    for ids, schedule in zip(parts, schedules, strict=True):
        for new, old in enumerate(ids):
            starts[old] = offset + schedule.starts[new]
            pools[old] = schedule.pools[new]
        offset += schedule.makespan
    return make_schedule(problem, starts, pools)
