"""`noetl similar EXECUTION_ID`, `noetl search TEXT` and `noetl indexer start`: similar past failures.

Locally, `similar` and `search` first index what ended since the last run (so they answer without a
separate indexer), then search; the embedded index lives under <NOETL_HOME>/qdrant, or a Qdrant server
is used when NOETL_QDRANT_URL is set (NOETL_QDRANT_API_KEY optional). The embedded index can be open in
one process at a time: while `noetl indexer start` (or a server running the indexer) holds it, point
the CLI at that server (NOETL_SERVER_URL) or use a Qdrant server. With NOETL_SERVER_URL set, `similar`
and `search` ask the server's API.

The first call in a process loads the embedding model (sentence-transformers: several seconds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from control_plane.errors import NotFoundError
from noetl import remote
from noetl.settings import stack_config

EXIT_INVALID, EXIT_UNAVAILABLE = 2, 3

indexer_app = typer.Typer(help="The event-log indexer: embeds failures, executions and playbooks.",
                          no_args_is_help=True)


def qdrant_target(home: Path) -> dict[str, Any]:
    """NOETL_QDRANT_URL (+ NOETL_QDRANT_API_KEY) when set, else the embedded index under home."""
    url = os.environ.get("NOETL_QDRANT_URL", "").strip()
    if url:
        return {"url": url, "api_key": os.environ.get("NOETL_QDRANT_API_KEY", "").strip() or None}
    return {"path": home / "qdrant"}


class _Local:
    """The store and this process's embeddings (agents.embeddings.runtime) over it, for one command."""

    async def __aenter__(self) -> Any:
        from agents.embeddings.runtime import EmbeddingsRuntime
        from control_plane.services.indexing import IndexingFeed
        from control_plane.store import open_store
        from control_plane.store.secret_key import load_secret_key
        from noetl.commands.catalog import store_dsn

        config = stack_config()
        self.store = await open_store(await store_dsn(), load_secret_key(config.home, config.secret_key))
        try:
            self.embeddings = EmbeddingsRuntime.open(IndexingFeed(self.store), **qdrant_target(config.home))
        except BaseException:
            await self.store.close()
            raise
        return self.embeddings

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.embeddings.close()
        finally:
            await self.store.close()


async def _similar_local(execution_id: str, step: str | None, limit: int) -> list[dict[str, Any]]:
    async with _Local() as local:
        await local.indexer.catch_up()
        return [r.to_dict() for r in await local.similar.for_execution(execution_id, step=step, limit=limit)]


async def _search_local(text: str, limit: int) -> list[dict[str, Any]]:
    async with _Local() as local:
        await local.indexer.catch_up()
        return [r.to_dict() for r in await local.similar.search(text, limit=limit)]


def _run_local(coroutine: Any) -> list[dict[str, Any]]:
    from agents.embeddings.index import IndexBusyError

    try:
        return asyncio.run(coroutine)  # type: ignore[no-any-return]
    except NotFoundError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from None
    except IndexBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def _remote(call: Callable[[Any], Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    return list(remote.call(call).get("items") or [])


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
    if remote.active():
        results = _remote(lambda client: client.similar(execution_id, step=step, limit=limit))
    else:
        results = _run_local(_similar_local(execution_id, step, limit))
    _print(results, as_json)


def search(
    text: Annotated[str, typer.Argument(help="An error message or a description of a failure.",
                                        show_default=False)],
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="How many to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Past failures like a text, best first (e.g. `noetl search "connection refused"`)."""
    if remote.active():
        results = _remote(lambda client: client.search(text, limit=limit))
    else:
        results = _run_local(_search_local(text, limit))
    _print(results, as_json)


async def _follow(poll_s: float, optimize_every: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with _Local() as local:
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
