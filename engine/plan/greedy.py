"""List scheduling: the fast answer, CP-SAT's hint, and the fallback when there is no time to solve.

A serial schedule-generation scheme: among the tasks whose predecessors are all placed, take the one of
highest priority and place it at its earliest start, on the feasible pool where it starts first
(ties: the smaller preference penalty, then the better-ranked pool), never beyond any pool's capacity.
The default priority is the critical path (the longest chain of durations from the task to the end).
`greedy` runs a few priority rules, improves each by double justification (a backward then a forward
pass, which never lengthens a schedule; repeated while it shortens it), and keeps the best by (makespan,
preference penalty). When a resource is the bottleneck, two rules also weigh the work each task unlocks
for it (`downstream_load`). Given time (a deadline or a budget), it then searches around the best
schedule: its start times, randomly perturbed, as priorities.
"""

from __future__ import annotations

import heapq
import random
import time
from bisect import bisect_right
from collections.abc import Sequence

from engine.plan.problem import Problem
from engine.plan.schedule import Schedule, make_schedule

JUSTIFY_PASSES = 8  # double justifications per schedule, while each one still shortens it
LOAD_WORK = 400_000  # users x tasks: the bit-set work `downstream_load` may do per resource
PERTURBATION = (0.02, 0.04, 0.06)  # noise of the local search, as shares of the makespan, in turn
STALL = 30  # the local search stops after this many tries in a row without a shorter schedule


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


def improve(problem: Problem, schedule: Schedule, passes: int = JUSTIFY_PASSES) -> Schedule:
    """Double justification repeated while it shortens the schedule (at most `passes` times)."""
    for _ in range(passes):
        better = justify(problem, schedule)
        if better.key >= schedule.key:
            break
        schedule = better
    return schedule


def downstream_load(problem: Problem) -> list[float] | None:
    """For each task, the most time its strict descendants need of one busy resource: the work they
    demand of it (duration x units) over its capacity summed over the pools. They all start after the
    task ends, so the task's duration plus this is, like its tail, time that must follow its start. A
    resource is busy when its work over capacity is at least half the critical path; resources with too
    many users for the set arithmetic (users x tasks > LOAD_WORK) are left out. None: no busy resource."""
    n = problem.size
    if n == 0:
        return None
    order = problem.topological_order()
    span = max(tails(problem), default=0)
    load = [0.0] * n
    found = False
    for r in range(len(problem.resources)):
        capacity = sum(c[r] for c in problem.capacity)
        work = [problem.demand[i][r] * problem.durations[i] / capacity if capacity > 0 else 0.0
                for i in range(n)]
        users = [i for i in range(n) if work[i] > 0]
        if not users or sum(work) < span / 2 or len(users) * n > LOAD_WORK:
            continue
        found = True
        bit = {u: 1 << k for k, u in enumerate(users)}
        below = [0] * n  # the users among each task's strict descendants, as a bit set
        for j in reversed(order):
            acc = 0
            for k in problem.succs[j]:
                acc |= below[k] | bit.get(k, 0)
            below[j] = acc
        for j in range(n):
            acc, total = below[j], 0.0
            while acc:
                low = acc & -acc
                total += work[users[low.bit_length() - 1]]
                acc ^= low
            load[j] = max(load[j], total)
    return load if found else None


def priority_rules(problem: Problem) -> list[list[float]]:
    """Critical path; with work (duration x demand share) or the number of successors as tie-breakers;
    the tasks with the fewest possible pools first, then by critical path. When a resource is busy
    (`downstream_load`): the larger of the tail and duration + downstream load, and the downstream load
    first (tail as tie-breaker), so tasks that unlock work for the bottleneck go first."""
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
    rules = [
        [float(t) for t in tail],
        [t + 0.5 * s / scale for t, s in zip(tail, share, strict=True)],
        [t + 0.001 * c for t, c in zip(tail, count, strict=True)],
        # the least flexible first: tasks only one pool can run go before those any pool can
        [t + span * (pools - len(task.options)) for t, task in zip(tail, problem.tasks, strict=True)],
    ]
    load = downstream_load(problem)
    if load is not None:
        durations = problem.durations
        rules.append([max(float(t), d + w) for t, d, w in zip(tail, durations, load, strict=True)])
        rules.append([w + t / span for t, w in zip(tail, load, strict=True)])
    return rules


def greedy(problem: Problem, *, budget_s: float = 0.0, seed: int = 0, justify_passes: bool = True,
           deadline: float | None = None) -> Schedule:
    """The best list schedule of a few priority rules, each improved by repeated double justification.
    Then a local search around the best schedule: its start times plus random noise (a few % of the
    makespan) as priorities, each result improved likewise, until `deadline` (a time.perf_counter()
    value) or for `budget_s` when given, whichever ends first, and no longer than STALL tries in a row
    without a shorter schedule. Past `deadline` no further rule is tried: the first one always is."""
    started = time.perf_counter()
    end = started + budget_s if budget_s > 0 else None
    if deadline is not None:
        end = deadline if end is None else min(end, deadline)
    best: Schedule | None = None
    for priority in priority_rules(problem):
        if best is not None and deadline is not None and time.perf_counter() > deadline:
            break
        candidate = _schedule(problem, priority, justify_passes)
        if best is None or candidate.key < best.key:
            best = candidate
    assert best is not None
    rng = random.Random(seed)
    tries = stalled = 0
    while end is not None and stalled < STALL and best.makespan > 0 and time.perf_counter() < end:
        amplitude = PERTURBATION[tries % len(PERTURBATION)] * best.makespan
        tries += 1
        candidate = _schedule(problem, [-(s + rng.random() * amplitude) for s in best.starts], justify_passes)
        if candidate.key < best.key:
            best, stalled = candidate, 0
        else:
            stalled += 1
    return best


def _schedule(problem: Problem, priority: Sequence[float], justify_passes: bool) -> Schedule:
    starts, pools = sgs(problem, priority)
    schedule = make_schedule(problem, starts, pools)
    return improve(problem, schedule) if justify_passes else schedule
