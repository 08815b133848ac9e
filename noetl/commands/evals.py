"""`noetl eval ...`: the evaluation suites, each printing its figures as JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

eval_app = typer.Typer(help="Run an evaluation suite and print its figures.", no_args_is_help=True)


@eval_app.command("dsl")
def eval_dsl(
    cases: Annotated[int, typer.Option(help="How many mutated playbooks to check.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed (the same seed gives the same cases).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the default output).")] = True,
) -> None:
    """Fuzz the playbook reader: no crash, every error located. Exit 1 when either fails."""
    from evals.suites import dsl_fuzz

    report = dsl_fuzz.run(cases, seed)
    print(json.dumps(report.as_json(), indent=2 if as_json else None))
    raise typer.Exit(0 if report.crashes == 0 and report.unlocated == 0 else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
