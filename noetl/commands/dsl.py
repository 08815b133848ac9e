"""`noetl validate` and `noetl schema`: the playbook language at the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from noetl.settings import configured_pools

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def validate(
    files: Annotated[list[Path], typer.Argument(help="Playbook files to check.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON on stdout.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    pools_file: Annotated[Path | None, typer.Option("--pools", help="A pools file: warn about steps no pool "
                                                    "can run (default: NOETL_POOLS, NOETL_HOME/pools.yaml).")]
    = None,
) -> None:
    """Check playbooks and report every problem at once as FILE:LINE:COL PATH: MESSAGE.

    Exit 0 when all files are valid, 1 when any is invalid, 2 when a file cannot be read.
    """
    from control_plane.triggers.definition import with_declared_checks
    from engine.errors import PlaybookSourceError
    from engine.plan.checks import validate_file_with_pools
    from engine.plan.pools import PoolConfigError

    try:
        pools = configured_pools(pools_file)
    except PoolConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_UNREADABLE) from None
    problems: list[dict[str, object]] = []
    code = EXIT_VALID
    for file in files:
        try:
            result = with_declared_checks(validate_file_with_pools(file, pools))
        except PlaybookSourceError as exc:
            problems.append({"file": str(file), "line": 0, "column": 0, "path": "(file)",
                             "message": exc.message, "code": "unreadable", "severity": "error"})
            if not as_json:
                print(f"{file}: error: {exc.message}", file=sys.stderr)
            code = EXIT_UNREADABLE
            continue
        for diag in result.diagnostics:
            if strict and diag.severity == "warning":
                diag = type(diag)(**{**diag.as_json(), "severity": "error"})  # type: ignore[arg-type]
            problems.append(diag.as_json())
            if not as_json:
                print(diag.format(), file=sys.stderr)
        if not result.valid(strict=strict) and code == EXIT_VALID:
            code = EXIT_INVALID
    if as_json:
        print(json.dumps(problems, indent=2))
    elif code == EXIT_VALID:
        print(f"{len(files)} playbook{'s' if len(files) != 1 else ''} valid", file=sys.stderr)
    raise typer.Exit(code)


def schema() -> None:
    """Print the JSON Schema of the playbook language (for editors)."""
    from engine.dsl.schema import playbook_json_schema

    print(json.dumps(playbook_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(schema)
