"""`noetl plan FILE`: how one execution of a playbook would be scheduled on the deployment's pools.

Pools come from `--pools FILE`, else NOETL_POOLS (the text of a pools file, YAML or JSON, or a path to
one), else `pools.yaml` in NOETL_HOME, else the built-in default: one pool `default` with `cpu: 4`.
Durations come from the event log (the median of each step's past successful runs) when a stack's
Postgres is reachable (NOETL_PG_DSN, or a running `noetl dev up` stack); with no stack at all the
per-kind defaults are used, and the output says so. Nothing is started to plan.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from noetl.devstack import running_dev_stack
from noetl.settings import configured_pools

if TYPE_CHECKING:
    from engine.plan.planner import Plan
    from engine.plan.pools import PoolSet

EXIT_OK, EXIT_UNSATISFIABLE, EXIT_INVALID = 0, 1, 2
# the planner's DEFAULT_MAX_SOLVE_S, spelled here so that `--help` need not import the planner
# (tests/unit/test_cli_imports.py keeps the two equal)
DEFAULT_MAX_SOLVE_S = 2.0
HISTORY_CONNECT_S = 3.0


def history_dsn() -> str | None:
    """The Postgres of a stack that is already there (NOETL_PG_DSN, a running dev stack); never starts one."""
    dsn = os.environ.get("NOETL_PG_DSN", "").strip()
    if dsn:
        return dsn
    state = running_dev_stack()
    return str(state["pg_dsn"]) if state and state.get("pg_dsn") else None


async def _read_medians(dsn: str, playbook_path: str) -> dict[str, float]:
    from control_plane.store.db import Database
    from control_plane.store.durations import step_duration_medians

    db = await Database.open(dsn, min_size=1, max_size=1, timeout=HISTORY_CONNECT_S)
    try:
        return await step_duration_medians(db, playbook_path)
    finally:
        await db.close()


def history_durations(playbook_path: str) -> tuple[dict[str, float], str]:
    """(step -> median ms, a sentence saying where the durations come from)."""
    import asyncio

    dsn = history_dsn()
    if dsn is None:
        return {}, "durations: per-kind defaults (no stack: set NOETL_PG_DSN or run `noetl dev up` to " \
                   "use the medians of past runs from the event log)"
    try:
        medians = asyncio.run(_read_medians(dsn, playbook_path))
    except Exception as exc:  # an unreachable or foreign database: plan anyway, and say so
        return {}, f"durations: per-kind defaults (the event log could not be read: {exc})"
    if not medians:
        return {}, f"durations: per-kind defaults (the event log has no successful run of '{playbook_path}')"
    return medians, f"durations: medians of past successful runs from the event log ({len(medians)} steps)"


def _fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    print(message, file=sys.stderr)
    return typer.Exit(code)


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.3f} s" if ms < 10_000 else f"{ms / 1000:.1f} s"


def format_plan(result: Plan, file: str, pools: PoolSet, notes: list[str]) -> str:
    problem, schedule = result.problem, result.schedule
    data = result.as_json()
    lines = [f"plan of {file}: {problem.size} task{'s' if problem.size != 1 else ''} on "
             f"{len(pools)} pool{'s' if len(pools) != 1 else ''} ({pools.source})"]
    lines.append(f"status {result.status}   makespan {_seconds(schedule.makespan)}   lower bound "
                 f"{_seconds(result.lower_bound_ms)}   greedy {_seconds(result.greedy.makespan)}   "
                 f"solved in {result.solve_ms:.0f} ms")
    peaks = _peaks(data)
    for pool, capacity in data["capacities"].items():
        parts = [f"{r} {u} (peak {peaks.get((pool, r), 0):g})" for r, u in capacity.items()]
        lines.append(f"  pool {pool}: {', '.join(parts) or 'no capacity declared'}")
    rows = data["steps"]
    starts, ends = data["schedule"]["starts_ms"], data["schedule"]["ends_ms"]
    width = max([4] + [len(r["step"]) for r in rows])
    lines.append(f"{'id':>5}  {'step':<{width}}  {'item':>5}  {'pool':<10} {'start ms':>10} {'end ms':>10}  "
                 "resources")
    shown = rows if len(rows) <= 200 else rows[:200]
    for row in shown:
        item = "-" if row["loop_index"] is None else str(row["loop_index"])
        res = ", ".join(f"{k}: {v}" for k, v in row["resources"].items()) or "-"
        lines.append(f"{row['id']:>5}  {row['step']:<{width}}  {item:>5}  {row['pool']:<10} "
                     f"{starts[row['id']]:>10} {ends[row['id']]:>10}  {res}")
    if len(rows) > len(shown):
        lines.append(f"  ... {len(rows) - len(shown)} more tasks (use --json for all)")
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def _peaks(data: dict[str, Any]) -> dict[tuple[str, str], float]:
    """The largest amount of each resource of each pool in use at once in the plan."""
    events: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
    starts, ends = data["schedule"]["starts_ms"], data["schedule"]["ends_ms"]
    for row in data["steps"]:
        if ends[row["id"]] <= starts[row["id"]]:
            continue
        for resource, units in row["resources"].items():
            events.setdefault((row["pool"], resource), []).extend(
                [(starts[row["id"]], 1, units), (ends[row["id"]], 0, -units)])
    peaks: dict[tuple[str, str], float] = {}
    for key, items in events.items():
        level = peak = 0.0
        for _, _, delta in sorted(items):
            level += delta
            peak = max(peak, level)
        peaks[key] = peak
    return peaks


def plan_command(
    file: Annotated[Path, typer.Argument(help="The playbook to plan.", show_default=False)],
    payload: Annotated[str | None, typer.Option("--payload", help="The execution's payload as JSON "
                                                "(merged over the workload).")] = None,
    resources: Annotated[str | None, typer.Option("--resources", help="Capacities of the default pool, "
                                                  "e.g. cpu=4,gpu=2 (added or replacing).")] = None,
    pools_file: Annotated[Path | None, typer.Option("--pools", help="A pools file (default: NOETL_POOLS, "
                                                    "else NOETL_HOME/pools.yaml).")] = None,
    max_solve_seconds: Annotated[float, typer.Option("--max-solve-seconds", min=0.0,
                                                     help="Time for the whole solve.")] = DEFAULT_MAX_SOLVE_S,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Plan one execution: tasks (loops expanded when their items are known), precedence from arcs and
    joins, durations from the event log, and a schedule on the pools (CP-SAT, greedy fallback).

    Exit 0 with a plan, 1 when a step can never run on the pools, 2 when the input is invalid."""
    from engine.errors import PlaybookSourceError
    from engine.plan.checks import validate_file_with_pools
    from engine.plan.planner import plan
    from engine.plan.pools import PoolConfigError, PoolSet, parse_capacity_overrides
    from engine.plan.problem import UnsatisfiableDemandError

    try:
        pools = configured_pools(pools_file) or PoolSet.default()
    except PoolConfigError as exc:
        raise _fail(f"error: {exc}") from None
    if resources:
        try:
            pools = pools.with_capacity(parse_capacity_overrides(resources))
        except (ValueError, PoolConfigError) as exc:
            raise _fail(f"error: --resources: {exc}") from None
    body: dict[str, Any] = {}
    if payload:
        try:
            body = json.loads(payload)
        except ValueError as exc:
            raise _fail(f"error: --payload is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _fail("error: --payload must be a JSON object, e.g. '{\"n\": 8}'")
    try:
        checked = validate_file_with_pools(file, pools)
    except PlaybookSourceError as exc:
        raise _fail(f"{file}: error: {exc.message}") from None
    for diag in checked.diagnostics:
        print(diag.format(), file=sys.stderr)
    if checked.net is None:
        raise typer.Exit(EXIT_INVALID)
    durations, source = history_durations(checked.net.playbook.metadata.catalog_path)
    try:
        result = plan(checked.net, pools, payload=body, durations=durations, max_solve_s=max_solve_seconds)
    except UnsatisfiableDemandError as exc:
        raise _fail(f"error: {exc}", EXIT_UNSATISFIABLE) from None
    notes = [source, *result.problem.notes]
    if as_json:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(format_plan(result, str(file), pools, notes))


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
