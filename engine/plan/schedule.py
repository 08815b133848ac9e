"""A schedule of a problem (start and pool of every task) and the checker every solver's answer passes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.plan.problem import Problem


@dataclass(frozen=True, slots=True)
class Schedule:
    starts: tuple[int, ...]  # ms from the start of the execution
    pools: tuple[int, ...]  # pool index of each task
    makespan: int
    penalty: int  # the sum of the preference penalties of the chosen pools

    @property
    def key(self) -> tuple[int, int]:
        """What is minimized, in order: the makespan, then the preference violations."""
        return (self.makespan, self.penalty)


def make_schedule(problem: Problem, starts: Sequence[int], pools: Sequence[int]) -> Schedule:
    durations = problem.durations
    makespan = max((s + d for s, d in zip(starts, durations, strict=True)), default=0)
    penalty = 0
    for task, pool in zip(problem.tasks, pools, strict=True):
        penalty += dict(task.options).get(pool, 0)
    return Schedule(tuple(starts), tuple(pools), makespan, penalty)


def violations(problem: Problem, schedule: Schedule) -> list[str]:
    """Everything wrong with a schedule (empty when it is valid): a start before 0, a pool the task may
    not use, a task starting before a predecessor ended, a resource of a pool used beyond capacity."""
    out: list[str] = []
    starts, pools, durations = schedule.starts, schedule.pools, problem.durations
    if len(starts) != problem.size or len(pools) != problem.size:
        return [f"the schedule has {len(starts)} starts and {len(pools)} pools for {problem.size} tasks"]
    for task in problem.tasks:
        i = task.id
        if starts[i] < 0:
            out.append(f"task {i} ({task.step}) starts at {starts[i]} < 0")
        if pools[i] not in dict(task.options):
            out.append(f"task {i} ({task.step}) is on pool {pools[i]}, not one of {dict(task.options)}")
    for a, b in problem.edges:
        if starts[b] < starts[a] + durations[a]:
            out.append(f"task {b} starts at {starts[b]} before its predecessor {a} ends at "
                       f"{starts[a] + durations[a]}")
    for p, pool in enumerate(problem.pools):
        members = [i for i in range(problem.size) if pools[i] == p and durations[i] > 0]
        # a sweep over starts and ends (an end frees its units before a start at the same time takes them)
        rows = [problem.demand[i] for i in members] + [units for q, _, units in problem.occupied if q == p]
        spans = [(starts[i], starts[i] + durations[i]) for i in members] + \
            [(0, until) for q, until, _ in problem.occupied if q == p]
        events = sorted([(end, 0, k) for k, (_, end) in enumerate(spans)]
                        + [(start, 1, k) for k, (start, _) in enumerate(spans)])
        for r, resource in enumerate(problem.resources):
            cap, used = problem.capacity[p][r], 0
            for time, is_start, k in events:
                used += rows[k][r] if is_start else -rows[k][r]
                if used > cap:
                    out.append(f"pool '{pool.name}' uses {used} of {resource} at {time} ms; capacity {cap}")
                    break
    if schedule.makespan != max((s + d for s, d in zip(starts, durations, strict=True)), default=0):
        out.append(f"makespan {schedule.makespan} is not the latest end")
    return out
