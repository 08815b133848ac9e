"""List scheduling: the fast answer, CP-SAT's hint, and the fallback when there is no time to solve.

A serial schedule-generation scheme: among the tasks whose predecessors are all placed, take the one of
highest priority and place it at its earliest start, on the feasible pool where it starts first
(ties: the smaller preference penalty, then the better-ranked pool), never beyond any pool's capacity.
The default priority is the critical path (the longest chain of durations from the task to the end).
`greedy` runs a few priority rules, improves each by double justification (a backward then a forward
pass, which never lengthens a schedule), and returns the best by (makespan, preference penalty).
"""

from __future__ import annotations

import heapq
import random
import time
from bisect import bisect_right
from collections.abc import Sequence

from engine.plan.problem import Problem
from engine.plan.schedule import Schedule, make_schedule


class Profile:
    """What one pool has in use over time: `use[k]` on [ts[k], ts[k+1]); the last segment runs forever."""

    __slots__ = ("cap", "ts", "use")

    def __init__(self, capacity: Sequence[int]) -> None:
        self.cap = tuple(capacity)
        self.ts: list[int] = [0]
        self.use: list[list[int]] = [[0] * len(capacity)]

    def earliest(self, est: int, duration: int, need: Sequence[tuple[int, int]]) -> int:
        """The earliest start >= est where `need` (resource index, units) fits for `duration`."""
        if duration <= 0 or not need:
            return est
        ts, use, cap = self.ts, self.use, self.cap
        k = bisect_right(ts, est) - 1
        start = est
        last = len(ts) - 1
        while True:
            end = start + duration
            j = k
            clash = -1
            while j <= last and ts[j] < end:
                row = use[j]
                for r, q in need:
                    if row[r] + q > cap[r]:
                        clash = j
                        break
                if clash >= 0:
                    break
                j += 1
            if clash < 0:
                return start
            if clash == last:  # cannot happen for a feasible pool: the last segment is empty
                raise ValueError("the demand does not fit this pool even when it is idle")
            start = ts[clash + 1]
            k = clash + 1

    def _split(self, t: int) -> int:
        k = bisect_right(self.ts, t) - 1
        if self.ts[k] == t:
            return k
        self.ts.insert(k + 1, t)
        self.use.insert(k + 1, list(self.use[k]))
        return k + 1

    def place(self, start: int, duration: int, need: Sequence[tuple[int, int]]) -> None:
        if duration <= 0 or not need:
            return
        first = self._split(start)
        last = self._split(start + duration)
        for k in range(first, last):
            row = self.use[k]
            for r, q in need:
                row[r] += q

    def free_at(self, t: int) -> list[int]:
        row = self.use[bisect_right(self.ts, t) - 1]
        return [c - u for c, u in zip(self.cap, row, strict=True)]


def new_profiles(problem: Problem) -> list[Profile]:
    """One profile per pool, holding what `problem.occupied` keeps busy from time 0."""
    profiles = [Profile(c) for c in problem.capacity]
    for pool, until, units in problem.occupied:
        profiles[pool].place(0, until, [(r, q) for r, q in enumerate(units) if q > 0])
    return profiles


def needs(problem: Problem, task: int) -> list[tuple[int, int]]:
    return [(r, q) for r, q in enumerate(problem.demand[task]) if q > 0]


def sgs(problem: Problem, priority: Sequence[float], *, reverse: bool = False,
        fixed_pools: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """Serial schedule generation: starts and pools, placing the highest-priority eligible task first.

    `reverse=True` schedules the reversed graph (successors first) in reversed time: the returned
    starts are then times before the end, to be mirrored by the caller."""
    n = problem.size
    before = problem.succs if reverse else problem.preds
    after = problem.preds if reverse else problem.succs
    durations = problem.durations
    waiting = [len(p) for p in before]
    heap = [(-priority[i], i) for i in range(n) if waiting[i] == 0]
    heapq.heapify(heap)
    profiles = new_profiles(problem)
    starts = [0] * n
    pools = [0] * n
    finish = [0] * n
    while heap:
        _, i = heapq.heappop(heap)
        est = max((finish[p] for p in before[i]), default=0)
        need = needs(problem, i)
        d = durations[i]
        options = problem.tasks[i].options
        if fixed_pools is not None:
            options = ((fixed_pools[i], 0),)
        best: tuple[int, int, int] | None = None
        for rank, (p, penalty) in enumerate(options):
            t = profiles[p].earliest(est, d, need)
            if best is None or (t, penalty, rank) < (best[0], best[1], best[2]):
                best = (t, penalty, rank)
                pools[i] = p
        assert best is not None, f"task {i} has no pool"
        starts[i] = best[0]
        finish[i] = best[0] + d
        profiles[pools[i]].place(best[0], d, need)
        for nxt in after[i]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(heap, (-priority[nxt], nxt))
    return starts, pools


def tails(problem: Problem) -> list[int]:
    """For each task, the longest chain of durations from its start to the end (its critical path)."""
    durations = problem.durations
    tail = [0] * problem.size
    for i in reversed(problem.topological_order()):
        tail[i] = durations[i] + max((tail[s] for s in problem.succs[i]), default=0)
    return tail


def heads(problem: Problem) -> list[int]:
    """For each task, the earliest start precedence alone allows."""
    durations = problem.durations
    head = [0] * problem.size
    for i in problem.topological_order():
        head[i] = max((head[p] + durations[p] for p in problem.preds[i]), default=0)
    return head


def justify(problem: Problem, schedule: Schedule) -> Schedule:
    """Double justification: every task as late as possible (latest end first), then as early as possible
    (earliest start first), pools kept. The result is never longer than the input."""
    durations = problem.durations
    ends = [s + d for s, d in zip(schedule.starts, durations, strict=True)]
    back, _ = sgs(problem, [float(e) for e in ends], reverse=True, fixed_pools=schedule.pools)
    horizon = max((b + d for b, d in zip(back, durations, strict=True)), default=0)
    late = [horizon - b - d for b, d in zip(back, durations, strict=True)]
    fwd, _ = sgs(problem, [-float(s) for s in late], fixed_pools=schedule.pools)
    result = make_schedule(problem, fwd, schedule.pools)
    return result if result.key <= schedule.key else schedule


def priority_rules(problem: Problem) -> list[list[float]]:
    """Critical path; with work (duration x demand share) or the number of successors as tie-breakers;
    the tasks with the fewest possible pools first, then by critical path."""
    tail = tails(problem)
    share = [0.0] * problem.size
    for i in range(problem.size):
        best = max((sum(q / max(1, problem.capacity[p][r]) for r, q in enumerate(problem.demand[i]))
                    for p, _ in problem.tasks[i].options), default=0.0)
        share[i] = best * problem.durations[i]
    scale = max(1.0, max(share, default=1.0))
    count = [len(s) for s in problem.succs]
    span = float(max(tail, default=0) + 1)
    pools = len(problem.pools)
    return [
        [float(t) for t in tail],
        [t + 0.5 * s / scale for t, s in zip(tail, share, strict=True)],
        [t + 0.001 * c for t, c in zip(tail, count, strict=True)],
        # the least flexible first: tasks only one pool can run go before those any pool can
        [t + span * (pools - len(task.options)) for t, task in zip(tail, problem.tasks, strict=True)],
    ]


def greedy(problem: Problem, *, budget_s: float = 0.0, seed: int = 0, justify_passes: bool = True,
           deadline: float | None = None) -> Schedule:
    """The best list schedule of a few priority rules (then random perturbations of the critical path
    while `budget_s` lasts), each improved by double justification. Past `deadline` (a
    time.perf_counter() value) no further rule is tried: the first one always is."""
    started = time.perf_counter()
    stop = started + budget_s
    best: Schedule | None = None
    rules = priority_rules(problem)
    for priority in rules:
        if best is not None and deadline is not None and time.perf_counter() > deadline:
            break
        starts, pools = sgs(problem, priority)
        candidate = make_schedule(problem, starts, pools)
        if justify_passes:
            candidate = justify(problem, candidate)
        if best is None or candidate.key < best.key:
            best = candidate
    rng = random.Random(seed)
    tail = rules[0]
    spread = max(1.0, max(tail, default=1.0)) * 0.1
    while time.perf_counter() < stop and (deadline is None or time.perf_counter() < deadline):
        priority = [t + rng.random() * spread for t in tail]
        starts, pools = sgs(problem, priority)
        candidate = make_schedule(problem, starts, pools)
        if justify_passes:
            candidate = justify(problem, candidate)
        assert best is not None
        if candidate.key < best.key:
            best = candidate
    assert best is not None
    return best
