"""A makespan no schedule can beat: the largest of the critical path, the energy bound of every resource,
the slot bound and the destructive energetic bound.

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

Destructive energetic bound: suppose a schedule ends by M. Every task then runs inside its window
[head, M - after] (after: its tail less its own duration). For the tasks of one (S, r) as above and an
interval [t1, t2], each must spend at least its mandatory part inside the interval whatever its place in
its window: units x max(0, min(t2 - t1, p, head + p - t1, t2 - (M - after - p))). When these exceed
capacity x (t2 - t1), no schedule ends by M. Before M is let go, the windows are narrowed (energetic
adjustment: a task placed at its earliest start would need more of some interval than the others leave
it, so it starts later; the same for the latest end), the narrowing is passed along the precedence
edges, and the check is made again, for a few rounds. Every refuted M proves makespan >= M + 1; M is
searched upward from the other bounds to within 0.1 %. The intervals: t1 among the window starts and
latest starts, t2 among the window ends and earliest ends, evenly sampled when a group is large; only
groups with enough work to bind (energy / capacity >= half the known bound) are checked. Capacity
held at time 0 (`Problem.occupied`) is left out by every bound here: the bounds are weaker for it, never
wrong. numpy (only in this module) evaluates tasks x intervals at once; it is imported at the first use.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.plan.greedy import heads, tails
from engine.plan.problem import Problem

if TYPE_CHECKING:
    import numpy as np

RELEVANT_SHARE = 0.5  # a group is checked when its energy / capacity is at least this share of the bound
CELLS = 1_500_000  # interval starts x interval ends x tasks per group: beyond, the intervals are sampled
ROUNDS = 8  # narrowing rounds per hypothesized makespan
TESTS = 14  # hypothesized makespans per bound
RESOLUTION = 1000  # the search stops within bound / RESOLUTION


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


def _pool_subsets(problem: Problem) -> list[frozenset[int]]:
    count = len(problem.pools)
    if count <= 10:
        return [frozenset(c) for k in range(1, count + 1) for c in itertools.combinations(range(count), k)]
    return [frozenset([p]) for p in range(count)] + [frozenset(range(count))]


def resource_groups(problem: Problem) -> list[tuple[list[int], int, int]]:
    """(users, resource index, capacity) per pool subset S and resource r: the tasks of positive
    duration that demand r and can only run on pools of S, and the capacity of r over S. The same users
    and resource under several subsets are kept once, with the smallest capacity (the others are
    weaker)."""
    durations = problem.durations
    allowed = [frozenset(p for p, _ in t.options) for t in problem.tasks]
    smallest: dict[tuple[tuple[int, ...], int], int] = {}
    for subset in _pool_subsets(problem):
        members = [i for i in range(problem.size) if allowed[i] and allowed[i] <= subset and durations[i] > 0]
        for r in range(len(problem.resources)):
            users = tuple(i for i in members if problem.demand[i][r] > 0)
            capacity = sum(problem.capacity[p][r] for p in subset)
            if users and capacity > 0:
                key = (users, r)
                smallest[key] = min(capacity, smallest.get(key, capacity))
    return [(list(users), r, capacity) for (users, r), capacity in smallest.items()]


def _after(problem: Problem) -> list[int]:
    """For each task, the longest chain after its end."""
    return [t - d for t, d in zip(tails(problem), problem.durations, strict=True)]


def energy_bound(problem: Problem) -> int:
    if not problem.tasks or not problem.resources:
        return 0
    head, after = heads(problem), _after(problem)
    durations = problem.durations
    best = 0
    for users, r, capacity in resource_groups(problem):
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
    head, after = heads(problem), _after(problem)
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


# ------------------------------------------------------------------------------ destructive bound


@dataclass(frozen=True, slots=True)
class _Group:
    """The tasks of one (pool subset, resource) as arrays: ids, units, durations; the capacity."""

    ids: np.ndarray
    units: np.ndarray
    durations: np.ndarray
    capacity: float
    samples: int  # at most this many interval starts (and as many ends) per check
    peak: float  # the largest units x duration: an interval with more room than this narrows nothing


def _groups(problem: Problem, known: int) -> list[_Group]:
    import numpy as np

    out = []
    for users, r, capacity in resource_groups(problem):
        units = np.array([problem.demand[i][r] for i in users], dtype=float)
        durations = np.array([problem.durations[i] for i in users], dtype=float)
        if float(units @ durations) < RELEVANT_SHARE * known * capacity:
            continue
        samples = max(8, int(math.sqrt(CELLS / len(users))))
        out.append(_Group(np.array(users), units, durations, float(capacity), samples,
                          float((units * durations).max())))
    return out


def _evenly(values: np.ndarray, limit: int) -> np.ndarray:
    import numpy as np

    distinct = np.unique(values)
    if len(distinct) <= limit:
        return distinct
    return distinct[np.linspace(0, len(distinct) - 1, limit).round().astype(int)]


def _mandatory(t1: np.ndarray, t2: np.ndarray, release: np.ndarray, latest: np.ndarray, p: np.ndarray,
               c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The units-weighted mandatory parts of the tasks in every interval [t1[a], t2[b]], and per (a, task)
    the ramp giving each one: inside(t2) = clip(t2 - rise[a], 0, height[a]).

    The part of a task inside [t1, t2] whatever its start in [release, latest] is
    max(0, min(t2 - t1, p, release + p - t1, t2 - latest)) = clip(t2 - max(t1, latest), 0,
    min(p, release + p - t1)): a ramp in t2. Their sum is evaluated at every t2 of a row from the sorted
    ramp corners and cumulative sums (weights x corners), so no array is intervals x intervals x tasks."""
    import numpy as np

    rows = len(t1)
    rise = np.maximum(t1[:, None], latest)
    height = np.maximum(np.minimum(p, release + p - t1[:, None]), 0)
    weight = np.where(height > 0, c, 0.0)
    corners = np.concatenate((rise, rise + height), axis=1)
    slopes = np.concatenate((weight, -weight), axis=1)
    order = np.argsort(corners, axis=1, kind="stable")
    corners = np.take_along_axis(corners, order, axis=1)
    slopes = np.take_along_axis(slopes, order, axis=1)
    zero = np.zeros((rows, 1))
    slope_sum = np.concatenate((zero, np.cumsum(slopes, axis=1)), axis=1)
    moment_sum = np.concatenate((zero, np.cumsum(slopes * corners, axis=1)), axis=1)
    # the number of corners <= t2 in each row: one search over the rows laid end to end
    low = min(float(corners.min()), float(t2.min()))
    width = max(float(corners.max()), float(t2.max())) - low + 1
    shift = np.arange(rows)[:, None] * width - low
    count = np.searchsorted((corners + shift).ravel(), (t2[None, :] + shift).ravel(), side="right")
    count = count.reshape(rows, len(t2)) - np.arange(rows)[:, None] * corners.shape[1]
    energy = t2[None, :] * np.take_along_axis(slope_sum, count, axis=1) - np.take_along_axis(
        moment_sum, count, axis=1)
    return energy, rise, height


def _narrow(group: _Group, start: np.ndarray, end: np.ndarray) -> bool | None:
    """One energetic pass over `group` with windows [start, end] (earliest start, latest end, per task):
    None when some interval is overloaded (no schedule fits the windows), else whether a window was
    narrowed (in place)."""
    import numpy as np

    p, c = group.durations, group.units
    release, deadline = start[group.ids], end[group.ids]
    latest = deadline - p
    t1 = _evenly(np.concatenate((release, latest)), group.samples)
    t2 = _evenly(np.concatenate((deadline, release + p)), group.samples)
    length = t2[None, :] - t1[:, None]
    energy, rise, height = _mandatory(t1, t2, release, latest, p, c)
    room = group.capacity * length - energy  # capacity-time the mandatory parts leave in the interval
    valid = length > 0
    if np.any(room[valid] < 0):
        return None
    a, b = np.nonzero(valid & (room < group.peak))
    if not a.size:
        return False
    left, right, span = t1[a][:, None], t2[b][:, None], length[a, b][:, None]
    inside = np.clip(right - rise[a], 0, height[a])  # each task's own mandatory part, per near interval
    fits = np.floor((room[a, b][:, None] + inside * c) / c)  # ms of it the others leave room for
    first = np.clip(p - np.maximum(0, left - release), 0, span)  # inside when it starts at its release
    new_start = np.where(first > fits, right - fits, -np.inf).max(axis=0)
    last = np.clip(p - np.maximum(0, deadline - right), 0, span)  # inside when it ends at its deadline
    new_end = np.where(last > fits, left + fits, np.inf).min(axis=0)
    if not (new_start > release).any() and not (new_end < deadline).any():
        return False
    start[group.ids] = np.maximum(release, new_start)
    end[group.ids] = np.minimum(deadline, new_end)
    return True


def _along_edges(problem: Problem, order: list[int], start: np.ndarray, end: np.ndarray) -> None:
    """Pass the narrowed windows along the precedence edges (in place): a task starts after its
    predecessors' earliest ends, and ends before its successors' latest starts."""
    durations = problem.durations
    s, e = start.tolist(), end.tolist()
    for j in order:
        for k in problem.preds[j]:
            if s[k] + durations[k] > s[j]:
                s[j] = s[k] + durations[k]
    for j in reversed(order):
        for k in problem.succs[j]:
            if e[k] - durations[k] < e[j]:
                e[j] = e[k] - durations[k]
    start[:] = s
    end[:] = e


def _refuted(problem: Problem, makespan: int, groups: list[_Group], order: list[int], head: np.ndarray,
             after: np.ndarray, durations: np.ndarray) -> bool:
    """True when no schedule of `problem` ends by `makespan` (an energetic contradiction is found)."""
    import numpy as np

    start, end = head.copy(), makespan - after
    if np.any(start + durations > end):
        return True
    for _ in range(ROUNDS):
        changed = False
        for group in groups:
            narrowed = _narrow(group, start, end)
            if narrowed is None:
                return True
            changed = changed or narrowed
        if not changed:
            return False
        _along_edges(problem, order, start, end)
        if np.any(start + durations > end):
            return True
    return False


def destructive_bound(problem: Problem, known: int) -> int:
    """The smallest makespan, searched upward from `known` (a lower bound already proven), that the
    energetic check does not refute: every makespan below it is refuted (see the module docstring)."""
    if not problem.tasks or not problem.resources or known <= 0:
        return known
    groups = _groups(problem, known)
    if not groups:
        return known
    import numpy as np

    order = problem.topological_order()
    head = np.array(heads(problem), dtype=float)
    after = np.array(_after(problem), dtype=float)
    durations = np.array(problem.durations, dtype=float)

    def refuted(makespan: int) -> bool:
        return _refuted(problem, makespan, groups, order, head, after, durations)

    if not refuted(known):
        return known
    lo, step, tests = known, max(1, known // 200), 1  # lo: the largest makespan refuted so far
    hi = lo + step
    while tests < TESTS and refuted(hi):
        lo, step, tests = hi, step * 2, tests + 1
        hi = lo + step
    tests += 1
    while tests < TESTS and hi - lo > max(1, known // RESOLUTION):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if refuted(mid) else (lo, mid)
        tests += 1
    return lo + 1


def lower_bound(problem: Problem) -> int:
    """No schedule of `problem` has a smaller makespan than this."""
    known = max(critical_path(problem), energy_bound(problem), slot_bound(problem))
    return destructive_bound(problem, known)
