"""`noetl export status [--json]` and `noetl export run [--once]`: the analytics exporter (docs/insights.md).

The exporter copies the event log into ClickHouse (NOETL_CLICKHOUSE_URL) and/or Parquet files
(NOETL_EXPORT_DIR) from a cursor stored in Postgres; `noetl server start` and `noetl dev up` run it when
either is set (`--no-exporter` turns it off). `run --once` exports what is pending and exits; `run`
follows the log until SIGINT/SIGTERM. The store is this machine's (NOETL_PG_DSN, the dev stack's, or
the embedded one).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Annotated, Any

import typer

EXIT_NOT_CONFIGURED = 2
EXIT_FAILED = 1

export_app = typer.Typer(help="The analytics exporter: the event log -> ClickHouse and/or Parquet.",
                         no_args_is_help=True)

NameOption = Annotated[str, typer.Option("--name", help="The exporter's name (its cursor); a new name "
                                                       "exports the whole log again.")]


async def _status(name: str) -> dict[str, Any]:
    from control_plane.services.exports import ExportFeed
    from noetl.local_store import open_local_store
    from noetl.settings import export_targets

    store = await open_local_store()
    try:
        status = (await ExportFeed(store).status(name)).to_dict()
    finally:
        await store.close()
    from agents.analytics.exporter import masked

    clickhouse_url, export_dir = export_targets()
    status["configured_sinks"] = ([f"clickhouse {masked(clickhouse_url)}"] if clickhouse_url else []) + (
        [f"parquet {export_dir}"] if export_dir else [])
    return status


@export_app.command("status")
def export_status(
    name: NameOption = "analytics",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Where the exporter stands: its cursor, the lag (events not exported yet and the oldest one's age),
    the rows it exported per table, its last export and last error, and the sinks."""
    from engine.runtime import eventloop

    status = eventloop.run(_status(name))
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return
    cursor = status["cursor"]
    print(f"exporter '{status['name']}': "
          + ("never ran" if cursor is None
             else f"at txid {cursor['txid']} {cursor['execution_id']}#{cursor['seq']}"))
    print(f"  lag: {status['lag_events']} events, {status['lag_seconds']:.1f} s")
    rows = status["rows_exported"]
    print("  rows exported: " + (", ".join(f"{k} {v}" for k, v in sorted(rows.items())) or "none"))
    print(f"  last export: {status['last_export_at'] or 'never'}")
    print(f"  sinks: {', '.join(status['sinks'] or status['configured_sinks']) or 'none configured'}")
    if status["last_error"]:
        print(f"  last error ({status['last_error_at']}): {status['last_error']}")


async def _run(name: str, once: bool, poll_s: float, batch: int) -> int:
    import asyncio

    from agents.analytics.exporter import Exporter
    from agents.analytics.runtime import open_sinks
    from control_plane.services.exports import ExportFeed
    from noetl.local_store import open_local_store
    from noetl.settings import export_targets

    clickhouse_url, export_dir = export_targets()
    sinks = open_sinks(clickhouse_url, export_dir)
    if not sinks:
        print("error: nothing to export to: set NOETL_CLICKHOUSE_URL (http://user:password@host:8123/db) "
              "and/or NOETL_EXPORT_DIR (a directory for Parquet files)", file=sys.stderr)
        return EXIT_NOT_CONFIGURED
    store = await open_local_store()
    exporter = Exporter(ExportFeed(store), sinks, name=name)
    try:
        if once:
            try:
                events = await exporter.catch_up(limit=batch)
            except Exception as exc:
                from agents.analytics.exporter import describe_error

                message = describe_error(exc)
                await exporter.feed.save_error(name, message, exporter.descriptions)
                print(f"error: the export stopped, its cursor kept: {message}", file=sys.stderr)
                return EXIT_FAILED
            print(f"exported {events} events: " + ", ".join(
                f"{k} {v}" for k, v in sorted(exporter.exported.items())) + " rows", file=sys.stderr)
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"exporter '{name}' following the event log into {', '.join(exporter.descriptions)} "
              "(Ctrl-C stops it)", file=sys.stderr, flush=True)
        await exporter.run(stop, poll_s=poll_s, limit=batch)
        return 0
    finally:
        await asyncio.to_thread(exporter.close)
        await store.close()


@export_app.command("run")
def export_run(
    once: Annotated[bool, typer.Option("--once", help="Export what is pending, then exit.")] = False,
    name: NameOption = "analytics",
    poll_s: Annotated[float, typer.Option("--poll", min=0.05, help="Seconds between reads when idle.")] = 1.0,
    batch: Annotated[int, typer.Option("--batch", min=1, max=50000, help="Events per batch.")] = 2000,
) -> None:
    """Export the event log to NOETL_CLICKHOUSE_URL and/or NOETL_EXPORT_DIR from the stored cursor
    (resumes where it stopped; a batch cut short is written again, never doubled)."""
    from engine.runtime import eventloop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = eventloop.run(_run(name, once, poll_s, batch))
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
