"""The exporter as a task of the serving process, and its sinks built from their settings (the entry
points read NOETL_CLICKHOUSE_URL / NOETL_EXPORT_DIR and pass them here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from agents.analytics.exporter import Exporter, Sink
from control_plane.services.exports import ExportFeed

log = logging.getLogger(__name__)


def open_sinks(clickhouse_url: str | None, export_dir: str | Path | None, *,
               clickhouse_database: str | None = None) -> list[Sink]:
    """The configured sinks (ClickHouse first); [] when neither is set. ClickHouse is connected lazily:
    an unreachable server fails the first batch (kept pending, retried), not the process start."""
    sinks: list[Sink] = []
    if clickhouse_url:
        from agents.analytics.clickhouse import ClickHouseSink

        sinks.append(ClickHouseSink(clickhouse_url, database=clickhouse_database))
    if export_dir:
        from agents.analytics.parquet import ParquetSink

        sinks.append(ParquetSink(export_dir))
    return sinks


class ExportRuntime:
    """`start()` follows the event log in a task; `close()` stops it at the end of its batch."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, feed: ExportFeed, sinks: list[Sink], name: str = "analytics") -> ExportRuntime:
        return cls(Exporter(feed, sinks, name=name))

    def start(self, poll_s: float = 1.0) -> None:
        if self._task is None:
            log.info("exporter '%s' following the event log into %s", self.exporter.name,
                     ", ".join(self.exporter.descriptions))
            self._task = asyncio.create_task(self.exporter.run(self._stop, poll_s=poll_s),
                                             name="noetl-exporter")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 30)
            except TimeoutError:
                log.warning("the exporter did not stop within 30 s; cancelled (its batch stays pending)")
            except Exception:
                log.exception("the exporter stopped with an error")
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.exporter.close)
