"""The `noetl` command: one Typer app; each area of the product adds its sub-commands here.

Nothing heavy is imported at module level: the app is built on first use (`noetl.cli.app`, `main()`),
each command module imports only Typer and the standard library, and each command imports what it
needs when it runs. `noetl ... --help` is printed from noetl.help_cache when it was printed before for
the same sources and terminal, and `noetl run FILE` against a running `noetl dev up` stack goes through
its REST API without building the app (noetl.fastrun) (docs/performance.md, "Command line").
"""

from __future__ import annotations

import sys
from pathlib import Path

TYPE_CHECKING = False  # not typing's: `noetl run` against a dev stack (noetl.fastrun) counts every ms
if TYPE_CHECKING:
    from typing import NoReturn

    import typer

EXIT_UNAVAILABLE = 3  # the command could not do its work: a server unreachable (noetl.outage), a key unusable

_app: typer.Typer | None = None


def build_app() -> typer.Typer:
    """The `noetl` Typer app with every area's sub-commands."""
    import typer

    from noetl.commands import (
        bench,
        catalog,
        chat,
        credentials,
        dsl,
        evals,
        executions,
        export,
        insights,
        plan,
        run,
        similar,
        stack,
        tokens,
        triggers,
        ui,
        why,
    )
    from noetl.commands import mcp as mcp_commands
    from noetl.commands import proposals as proposals_commands

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
    insights.register(app)
    chat.register(app)
    similar.register(app)
    proposals_commands.register(app)
    mcp_commands.register(app)
    ui.register(app)
    export.register(app)
    triggers.register(app)
    return app


def get_app() -> typer.Typer:
    """The app, built once per process."""
    global _app
    if _app is None:
        _app = build_app()
    return _app


def __getattr__(name: str) -> typer.Typer:  # `from noetl.cli import app` builds it then
    if name == "app":
        return get_app()
    raise AttributeError(f"module 'noetl.cli' has no attribute '{name}'")


def main() -> None:
    """The console script: errors NoETL raises on purpose print as one line, never a traceback."""
    from noetl.stdio import use_whole_writes

    use_whole_writes()
    args = sys.argv[1:]
    if args[:1] == ["run"]:  # against a running dev stack, through its API without the app (noetl.fastrun)
        from noetl import fastrun

        try:
            code = fastrun.attempt(args)
        except Exception as exc:  # only a hand-off to the full path raises: it fails as that path does
            _fail(exc)
        if code is not None:
            sys.exit(code)
    from noetl import help_cache

    if help_cache.enabled() and help_cache.wanted(args):
        _help(help_cache.cache_file(args))
        return
    try:
        get_app()()
    except Exception as exc:
        _fail(exc)


def _fail(exc: Exception) -> NoReturn:
    """An error NoETL raised on purpose as one line (exit 3); anything else as it is."""
    from engine.errors import NoetlError

    if not isinstance(exc, NoetlError):
        raise exc
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(EXIT_UNAVAILABLE)


def _help(path: Path) -> None:
    """A help page from the cache, else from the app (and then kept for next time)."""
    from noetl import help_cache

    if help_cache.serve(path):
        return
    out, err = help_cache.Recorder(sys.stdout), help_cache.Recorder(sys.stderr)
    sys.stdout, sys.stderr = out, err
    code: object = 0
    try:
        get_app()()
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        sys.stdout, sys.stderr = out.stream, err.stream
        if code in (0, None) and not err.parts:
            help_cache.store(path, "".join(out.parts))


if __name__ == "__main__":
    main()
