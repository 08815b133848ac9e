"""Scheduling: ready steps x worker pools -> order and placement (CP-SAT with a greedy fallback).

- `plan(net, pools, payload=..., durations=..., max_solve_s=...) -> Plan`: a whole execution planned
  ahead (`noetl plan`): tasks, precedence, a schedule, its lower bound and status.
- `order_ready(ready, running, pools, budget_s=...) -> list[Placement]`: at dispatch time, which ready
  steps to start now and where, never beyond capacity.
- Pools (`engine.plan.pools`), demands (`engine.plan.demands`), the problem (`engine.plan.problem`), the
  greedy list scheduler, the lower bound, and `engine.plan.cpsat`, the only module importing ortools
  (imported lazily: it costs about half a second).
"""

from engine.plan.demands import Demand, feasible_pools, infeasibility_reason, step_demand
from engine.plan.dispatch import Placement, ReadyTask, RunningTask, order_ready, step_priorities, warm_up
from engine.plan.planner import Plan, plan, solve_problem
from engine.plan.pools import Pool, PoolConfigError, PoolSet, load_pools_file, parse_pools
from engine.plan.problem import Problem, TaskSpec, UnsatisfiableDemandError, make_problem, problem_from_net

__all__ = [
    "Demand", "Placement", "Plan", "Pool", "PoolConfigError", "PoolSet", "Problem", "ReadyTask",
    "RunningTask", "TaskSpec", "UnsatisfiableDemandError", "feasible_pools", "infeasibility_reason",
    "load_pools_file", "make_problem", "order_ready", "parse_pools", "plan", "problem_from_net",
    "solve_problem", "step_demand", "step_priorities", "warm_up",
]
