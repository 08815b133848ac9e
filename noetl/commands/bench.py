"""`noetl bench ...`: benchmarks that print their figures against a floor measured in the same run."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

if TYPE_CHECKING:
    from evals.benchmarks.dispatch_engine import Waiter

bench_app = typer.Typer(help="Measure the engine against its floor on this machine.", no_args_is_help=True)


@bench_app.command("dispatch")
def bench_dispatch(
    steps: Annotated[int, typer.Option(min=1, help="Length of the sequential chain of noop steps.")] = 200,
    items: Annotated[int, typer.Option(min=1, help="Items of the parallel loop of noop steps.")] = 2000,
    round_trips: Annotated[int, typer.Option(min=1, help="JetStream floor round trips.")] = 1000,
    repetitions: Annotated[int, typer.Option(
        min=1, help="Turns of floor round trips, chain, floor throughput and loop (median).")] = 5,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="The engine's worker pool concurrency (default: the floor consumer's batch, so both "
                    "sides hold as many messages at once).")] = None,
    waiter: Annotated[str, typer.Option(help="How the client waits: 'light' (poll the execution row) or "
                                             "'service' (ExecutionService.wait).")] = "light",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a target is missed.")] = False,
) -> None:
    """Per-step overhead and loop throughput of the engine against the raw JetStream floor.

    Uses NOETL_NATS_URL / NOETL_PG_DSN when set, else embedded servers in a fresh temporary home."""
    from evals.benchmarks.dispatch import format_report, run_dispatch_benchmark

    if waiter not in ("light", "service"):
        print(f"--waiter must be 'light' or 'service', got '{waiter}'", file=sys.stderr)
        raise typer.Exit(2)
    sizes: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
    result = run_dispatch_benchmark(
        chain_steps=steps, loop_items=items, round_trips=round_trips, repetitions=repetitions,
        waiter=cast("Waiter", waiter), **sizes,
        nats_url=os.environ.get("NOETL_NATS_URL") or None, pg_dsn=os.environ.get("NOETL_PG_DSN") or None,
        progress=None if as_json else lambda line: print(line, file=sys.stderr))
    print(json.dumps(result, indent=2) if as_json else format_report(result))
    if check and not all(result["met"].values()):
        raise typer.Exit(1)


@bench_app.command("eventlog")
def bench_eventlog(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when the target is missed.")] = False,
) -> None:
    """Append latency of the event log as it grows, against the empty log's, in one run (on an embedded
    Postgres of its own)."""
    from engine.runtime import eventloop
    from evals.benchmarks.event_log_growth import measure

    result = eventloop.run(measure())
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for size, ms in result["append_ms_by_log_size"].items():
            print(f"{int(size):>8} events: append {ms:.3f} ms  (x{result['ratio_to_empty_log'][size]})")
        print("target met" if result["met"] else "target MISSED")
    if check and not result["met"]:
        raise typer.Exit(1)


@bench_app.command("plan")
def bench_plan(
    seeds: Annotated[int, typer.Option(min=1, help="Seeded instances per family (median over them).")] = 5,
    steps: Annotated[int, typer.Option(min=100, help="Tasks per instance.")] = 1000,
    max_solve_seconds: Annotated[float, typer.Option(min=0.0, help="The solve budget per instance.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a target is missed.")] = False,
) -> None:
    """The planner on 1,000-step, 3-pool instances: solve time, makespan, lower bound, gap, greedy."""
    from evals.benchmarks.plan import format_report, run

    result = run(seeds, steps=steps, max_solve_s=max_solve_seconds)
    print(json.dumps(result, indent=2) if as_json else format_report(result))
    if check and not all(result["met"].values()):
        raise typer.Exit(1)


@bench_app.command("cli")
def bench_cli(
    runs: Annotated[int, typer.Option(min=1, help="Runs of each command (median over them).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a goal is missed.")] = False,
) -> None:
    """Command line start-up: `noetl --help` and `noetl run` (one step) against `python -c pass`.

    In one run, on a dev stack of its own (started and stopped here). Goals: help within 3x, run
    within 4x."""
    from evals.benchmarks.cli import BenchError, format_report, run

    try:
        result = run(runs, progress=None if as_json else lambda line: print(line, file=sys.stderr))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(json.dumps(result, indent=2) if as_json else format_report(result))
    if check and not all(result["met"].values()):
        raise typer.Exit(1)


@bench_app.command("python")
def bench_python(
    calls: Annotated[int, typer.Option(min=1, help="Sequential calls of a trivial body, warm pool.")] = 2000,
    items: Annotated[int, typer.Option(min=1, help="Items of the python loop and of the noop loop.")] = 2000,
    repetitions: Annotated[int, typer.Option(min=1, help="Turns of noop loop and python loop (median).")] = 3,
    concurrency: Annotated[int, typer.Option(min=1, help="The worker's concurrency for both loops.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a target is missed.")] = False,
) -> None:
    """The python tool's per-call p50/p95 on a warm pool, and a python loop's items/s against the same
    loop of noop steps at the same concurrency.

    Uses NOETL_NATS_URL / NOETL_PG_DSN when set, else embedded servers in a fresh temporary home."""
    from evals.benchmarks.python_tool import format_report, run_python_benchmark

    result = run_python_benchmark(
        calls=calls, items=items, repetitions=repetitions, concurrency=concurrency,
        nats_url=os.environ.get("NOETL_NATS_URL") or None, pg_dsn=os.environ.get("NOETL_PG_DSN") or None,
        progress=None if as_json else lambda line: print(line, file=sys.stderr))
    print(json.dumps(result, indent=2) if as_json else format_report(result))
    if check and not all(result["met"].values()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
