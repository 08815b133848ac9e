"""`noetl run FILE`: validate, then run a playbook to its end on the real stack, with live progress."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from noetl.devstack import running_dev_stack
from noetl.payload import parse_payload
from noetl.settings import idle_stop_s, outage_wait_s, stack_config

if TYPE_CHECKING:
    from control_plane.services.executions import ExecutionService
    from control_plane.stack import Stack
    from noetl.outage import Rider
    from noetl.progress import Progress
    from noetl.session import Session

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def run(
    file: Annotated[Path, typer.Argument(help="The playbook to run.", show_default=False)],
    payload: Annotated[str | None, typer.Option(help="A JSON object deep-merged into the workload.")] = None,
    merge: Annotated[bool, typer.Option(
        "--merge", help="Deep-merge the payload into the workload (the default; NoETL's flag).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document at the end.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
) -> None:
    """Run a playbook to its end. Exit 0 completed, 1 failed or cancelled, 2 invalid, 3 Postgres or NATS
    unreachable for longer than NOETL_OUTAGE_WAIT_S, 4 still running when --timeout ends.

    With `noetl dev up` running for NOETL_HOME, the run goes to that stack.
    Otherwise it runs here, on the embedded nats-server and PostgreSQL under NOETL_HOME (started or reused);
    they stay up for later runs and stop once unused for NOETL_IDLE_STOP (default 15m; 0 = never)."""
    from engine.errors import PlaybookSourceError
    from engine.net.validate import validate_file
    from engine.runtime import eventloop
    from noetl.follow import ENDED, EXIT_RUNNING, report_timeout
    from noetl.outage import Rider

    data = parse_payload(payload)
    idle_s = idle_stop_s()
    try:
        result = validate_file(file)
    except PlaybookSourceError as exc:
        print(f"{file}: error: {exc.message}", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from None
    for diag in result.diagnostics:
        print(diag.format(), file=sys.stderr)
    if result.errors:
        raise typer.Exit(EXIT_INVALID)
    text = file.read_text(encoding="utf-8")
    summary = eventloop.run(_run(text, str(file), data, as_json, timeout, idle_s, Rider(outage_wait_s())))
    if as_json:  # written and flushed here, so that a failing write is an error, not a cut document
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        sys.stdout.flush()
    if summary["status"] not in ENDED:
        report_timeout(summary["execution_id"], timeout, summary["status"])
        raise typer.Exit(EXIT_RUNNING)
    raise typer.Exit(EXIT_COMPLETED if summary["status"] == "completed" else EXIT_FAILED)


@dataclass(frozen=True)
class HandOff:
    """An execution noetl.fastrun asked the dev stack's API to start, for the full path to go on with
    when the API stopped answering as expected: start it again under its id (which starts it once), and
    follow it after the events already shown."""

    path: str
    version: int
    execution_id: str
    progress: Progress | None  # entered already, its events shown; None: not started for sure
    seen: list[dict[str, Any]] = field(default_factory=list)


def resume(text: str, file: str, payload: dict[str, Any], as_json: bool, timeout: float | None,
           handoff: HandOff) -> dict[str, Any]:
    """The summary of the execution `handoff` names, followed the full way (as `run` does)."""
    from engine.runtime import eventloop
    from noetl.outage import Rider

    return eventloop.run(_run(text, file, payload, as_json, timeout, idle_stop_s(),
                              Rider(outage_wait_s()), handoff))


async def _run(text: str, file: str, payload: dict[str, Any], as_json: bool,
               timeout: float | None, idle_s: float, rider: Rider,
               handoff: HandOff | None = None) -> dict[str, Any]:
    from engine.runtime import idle_watchdog
    from noetl.session import Session

    dev = running_dev_stack()
    overrides: dict[str, Any] = {}
    if dev is not None:  # `noetl dev up` runs the orchestrator and workers: only submit and follow
        overrides = {"orchestrator": False, "workers": {}, "nats_url": dev["nats_url"],
                     "pg_dsn": dev["pg_dsn"]}
    config = stack_config(**overrides)
    embedded = dev is None and (config.nats_url is None or config.pg_dsn is None)
    # a one-off run on the embedded servers: they are not stopped while it runs, and stop once idle
    with idle_watchdog.lease(config.home) if embedded else contextlib.nullcontext():
        session = Session(config, reopen=dev is not None)
        try:
            if embedded:
                await session.stack()
                idle_watchdog.spawn(config.home, idle_s)
            return await _follow(session, rider, text, file, payload, as_json, timeout, handoff)
        finally:
            await session.close()


async def _follow(session: Session, rider: Rider, text: str, file: str, payload: dict[str, Any],
                  as_json: bool, timeout: float | None, handoff: HandOff | None = None) -> dict[str, Any]:
    """Register and start the playbook, show its progress, and return its summary at the end (or when
    --timeout ends first), riding through outages of Postgres and NATS."""
    from engine.protocol.events import Event
    from engine.protocol.ids import new_execution_id
    from noetl.follow import ENDED, follow_local
    from noetl.progress import Progress

    if handoff is None:
        registered = await rider(lambda: session.call(lambda stack: _executions(stack).register(text, file)))
        path, version = registered.path, registered.version
        execution_id = new_execution_id()  # chosen here, so that starting again after an outage is safe
    else:
        path, version, execution_id = handoff.path, handoff.version, handoff.execution_id
    await rider(lambda: session.call(lambda stack: _executions(stack).start(
        path, version=version, payload=payload, execution_id=execution_id)))
    shown = handoff.progress if handoff is not None else None
    progress = shown or Progress(execution_id, quiet=as_json)
    history = [Event.model_validate(item) for item in handoff.seen] if handoff is not None else []
    with contextlib.nullcontext() if shown is not None else progress:  # a handed-off one is entered
        summary = await follow_local(session, rider, execution_id, timeout, progress.update, history)
    if summary["status"] in ENDED and shown is None:  # a handed-off one is finished by who entered it
        progress.finish(summary)
    return summary


def _executions(stack: Stack) -> ExecutionService:
    assert stack.executions is not None
    return stack.executions


def register(app: typer.Typer) -> None:
    app.command()(run)
