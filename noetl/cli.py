"""The `noetl` command: one Typer app; each area of the product adds its sub-commands here."""

from __future__ import annotations

import sys

import typer

from engine.errors import NoetlError
from noetl.commands import (
    bench,
    catalog,
    credentials,
    dsl,
    evals,
    executions,
    plan,
    run,
    similar,
    stack,
    tokens,
    why,
)
from noetl.commands import mcp as mcp_commands
from noetl.commands import proposals as proposals_commands
from noetl.stdio import use_whole_writes

app = typer.Typer(
    name="noetl",
    help="NoETL: run, inspect and improve workflow playbooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dsl.register(app)
run.register(app)
catalog.register(app)
credentials.register(app)
executions.register(app)
tokens.register(app)
stack.register(app)
bench.register(app)
evals.register(app)
plan.register(app)
why.register(app)
similar.register(app)
proposals_commands.register(app)
mcp_commands.register(app)


EXIT_UNAVAILABLE = 3  # the command could not do its work: a server unreachable (noetl.outage), a key unusable


def main() -> None:
    """The console script: errors NoETL raises on purpose print as one line, never a traceback."""
    use_whole_writes()
    try:
        app()
    except NoetlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_UNAVAILABLE)


if __name__ == "__main__":
    main()
