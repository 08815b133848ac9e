"""A makespan no schedule can beat: max(critical path, energy bound of every resource, slot bound).

Energy bound: tasks that can only run on a set S of pools need, for resource r, sum(duration x units) of
r-capacity-time from S, which provides sum(capacity of r over S) per ms. Take those whose head (earliest
start by precedence) is at least a and whose tail (the longest chain after them) is at least b: they all
run between a and makespan - b, so makespan >= a + ceil(energy / capacity) + b. Thresholds a are sampled
among the heads (b runs over the tails), and symmetrically. Every non-empty S of up to 10 pools is tried
(for more pools: each pool alone and all of them).

Slot bound: tasks with one demand vector and one set of pools (a loop's items) fit at most K at once,
K = sum over the pools of min over resources of floor(capacity / units): the same thresholds with K
machines, and the rounds K machines need ((q + 1) x the (qK + 1)-th longest task). It sees what the
energy bound cannot: a pool whose cpu and memory each fit 4 tasks of one kind but not the same 4, and
capacity that whole tasks cannot use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from engine.plan.greedy import heads, tails
from engine.plan.problem import Problem


def critical_path(problem: Problem) -> int:
    return max(tails(problem), default=0)


def _sampled(values: list[int], limit: int = 100) -> list[int]:
    distinct = sorted(set(values))
    step = max(1, len(distinct) // limit)
    return distinct[::step]


def _window_bound(users: list[int], before: list[int], after: list[int], energy: list[int],
                  capacity: int) -> int:
    """max over thresholds a of: a + ceil(E / C) + b, where E is the energy of the users with
    before >= a and after >= b (a chosen among the users' `before`, b running down their `after`)."""
    best = 0
    for a in _sampled([before[i] for i in users], max(10, 100_000 // max(1, len(before)))):
        subset = sorted((i for i in users if before[i] >= a), key=lambda i: -after[i])
        total = 0
        for i in subset:
            total += energy[i]
            best = max(best, a + math.ceil(total / capacity) + after[i])
    return best


def energy_bound(problem: Problem) -> int:
    if not problem.tasks or not problem.resources:
        return 0
    head = heads(problem)
    durations = problem.durations
    after = [t - d for t, d in zip(tails(problem), durations, strict=True)]
    count = len(problem.pools)
    if count <= 10:
        subsets = [frozenset(c) for k in range(1, count + 1) for c in itertools.combinations(range(count), k)]
    else:
        subsets = [frozenset([p]) for p in range(count)] + [frozenset(range(count))]
    allowed = [frozenset(p for p, _ in t.options) for t in problem.tasks]
    best = 0
    for subset in subsets:
        members = [i for i in range(problem.size) if allowed[i] and allowed[i] <= subset and durations[i] > 0]
        for r in range(len(problem.resources)):
            users = [i for i in members if problem.demand[i][r] > 0]
            capacity = sum(problem.capacity[p][r] for p in subset)
            if not users or capacity <= 0:
                continue
            energy = [0] * problem.size
            for i in users:
                energy[i] = durations[i] * problem.demand[i][r]
            best = max(best, _window_bound(users, head, after, energy, capacity),
                       _window_bound(users, after, head, energy, capacity))
    return best


def slot_bound(problem: Problem) -> int:
    """Tasks with the same demand and the same pools (the items of a loop, above all) can run at most
    K at once, K = sum over their pools of min over resources of floor(capacity / units): the energy
    bound of K identical machines, with the same head and tail thresholds."""
    if not problem.tasks:
        return 0
    classes: dict[tuple[tuple[int, ...], frozenset[int]], list[int]] = {}
    durations = problem.durations
    for task in problem.tasks:
        row = problem.demand[task.id]
        if durations[task.id] > 0 and any(row) and task.options:
            classes.setdefault((row, frozenset(p for p, _ in task.options)), []).append(task.id)
    if not classes:
        return 0
    head = heads(problem)
    after = [t - d for t, d in zip(tails(problem), durations, strict=True)]
    energy = list(durations)
    best = 0
    for (row, pools), users in classes.items():
        slots = sum(min(problem.capacity[p][r] // q for r, q in enumerate(row) if q > 0) for p in pools)
        if slots <= 0 or len(users) <= slots:
            continue
        best = max(best, _window_bound(users, head, after, energy, slots),
                   _window_bound(users, after, head, energy, slots), _rounds_bound(users, head, after,
                                                                                  durations, slots))
    return best


def _rounds_bound(users: list[int], head: list[int], after: list[int], durations: Sequence[int],
                  slots: int) -> int:
    """At most `slots` of these tasks at once is `slots` machines (intervals colour like that): among the
    q*slots + 1 longest, some machine runs q + 1, so the makespan is at least (q + 1) x the
    (q*slots + 1)-th longest duration, plus the smallest head and tail of the class."""
    longest = sorted((durations[i] for i in users), reverse=True)
    rounds = max((q + 1) * longest[q * slots] for q in range(len(longest) // slots + 1)
                 if q * slots < len(longest))
    return min(head[i] for i in users) + rounds + min(after[i] for i in users)


def lower_bound(problem: Problem) -> int:
    """No schedule of `problem` has a smaller makespan than this."""
    return max(critical_path(problem), energy_bound(problem), slot_bound(problem))
