"""`noetl similar EXECUTION_ID`, `noetl search TEXT` and `noetl indexer start`: similar past failures.

Locally, `similar` and `search` first index what ended since the last run (so they answer without a
separate indexer), then search; the embedded index lives under <NOETL_HOME>/qdrant, or a Qdrant server
is used when NOETL_QDRANT_URL is set (NOETL_QDRANT_API_KEY optional). The embedded index can be open in
one process at a time: while `noetl indexer start` (or a server running the indexer) holds it, point
the CLI at that server (NOETL_SERVER_URL) or use a Qdrant server. With NOETL_SERVER_URL set, `similar`
and `search` ask the server's API (noetl.backend chooses).

The first call in a process loads the embedding model (sentence-transformers: several seconds).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Annotated, Any

import typer

from noetl.backend import call

EXIT_UNAVAILABLE = 3

indexer_app = typer.Typer(help="The event-log indexer: embeds failures, executions and playbooks.",
                          no_args_is_help=True)


def _print(results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"items": results}, indent=2, default=str))
        return
    if not results:
        print("no similar past failures indexed yet")
        return
    for r in results:
        nxt = r.get("next") or {}
        then = []
        if nxt.get("retried_and_succeeded"):
            then.append("a retry succeeded")
        if nxt.get("later_execution_id"):
            step_then = {True: ", the step succeeded", False: ", the step failed"}.get(
                nxt.get("later_step_succeeded"), "")
            then.append(f"the next run {nxt['later_execution_id']} {nxt.get('later_run_status')}{step_then}")
        elif nxt.get("later_run_succeeded") is None:
            then.append("no later run yet")
        print(f"{r['score']:.3f}  {r['execution_id']}  step '{r.get('step')}'  {r.get('error_kind')}  "
              f"{r.get('playbook_path')}  {r.get('occurred_at') or ''}")
        message = " ".join(str(r.get("error_message") or "").split())
        print(f"       {message[:200]}")
        print(f"       then: {'; '.join(then) or 'nothing recorded'}")


def similar(
    execution_id: Annotated[str, typer.Argument(help="A failed execution.", show_default=False)],
    step: Annotated[str | None, typer.Option("--step", help="Only this step's failures.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="How many to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Past failures like this execution's, best first, with what happened next (did a retry or a later
    run succeed). Exit 2 for an unknown execution."""
    results = call(lambda backend: backend.similar(execution_id, step, limit))
    _print(results, as_json)


def search(
    text: Annotated[str, typer.Argument(help="An error message or a description of a failure.",
                                        show_default=False)],
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="How many to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Past failures like a text, best first (e.g. `noetl search "connection refused"`)."""
    results = call(lambda backend: backend.search(text, limit))
    _print(results, as_json)


async def _follow(poll_s: float, optimize_every: int) -> None:
    import asyncio

    from noetl.local_store import LocalEmbeddings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with LocalEmbeddings() as local:
        await asyncio.to_thread(local.embedder.load)  # the model once, before the first batch
        local.indexer.optimize_every = optimize_every or None
        print(f"indexer following the event log into {local.index.key} (Ctrl-C stops it)", file=sys.stderr)
        await local.indexer.run(stop, poll_s=poll_s)
        print(f"indexer stopped: {local.indexer.indexed} documents indexed", file=sys.stderr)


@indexer_app.command("start")
def indexer_start(
    poll_s: Annotated[float, typer.Option("--poll", min=0.05, help="Seconds between reads when idle.")] = 1.0,
    optimize_every: Annotated[int, typer.Option(
        "--optimize-every", min=0, help="Build the embedded index's search graph after this many new "
                                        "failures, when idle (0: never; searches stay exact).")] = 20000,
) -> None:
    """Follow the event log and index every ended execution (until SIGINT/SIGTERM); resumes from its
    stored cursor after a restart."""
    from agents.embeddings.index import IndexBusyError
    from engine.runtime import eventloop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        eventloop.run(_follow(poll_s, optimize_every))
    except IndexBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def register(app: typer.Typer) -> None:
    app.command("similar")(similar)
    app.command("search")(search)
    app.add_typer(indexer_app, name="indexer")
