"""The exporter: follows the event log from its stored cursor and writes each batch to every sink.

Position (JSON in `export_cursors`): `key`, the last exported event's (txid, execution_id, seq), and
`pending`, the batch being written: {"after": key, "upto": key, "hi": snapshot xmin}. A batch is
chosen and saved as pending *before* it is written, and the cursor moves to `upto` only after every
sink took it. After a crash the same batch (the same rows: everything below `hi` is final) is written
again under the same batch id: ClickHouse's ReplacingMergeTree tables and the Parquet files named by
the batch id replace what the first attempt wrote, so delivery is at least once and rows are never
doubled. A failing sink keeps the batch pending; the exporter retries with backoff and records the
error (passwords masked) for `noetl export status`. The cursor only moves from the position its writer
read (compare and set), so two exporters of the same name (a server and `noetl export run`) never
choose overlapping batches: the one that loses the race waits for its next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agents.analytics.rows import Rows, batch_rows, ended_in
from control_plane.services.exports import ExportFeed, Key, key_of

log = logging.getLogger(__name__)

BATCH = 2000  # events per batch
MAX_BACKOFF_S = 60.0


class Sink(Protocol):
    """Where batches go (agents.analytics.clickhouse.ClickHouseSink, agents.analytics.parquet.ParquetSink).
    `write` is blocking (run in a thread) and must be idempotent per `batch_id`."""

    description: str  # for logs and status: never a password

    def write(self, batch_id: str, rows: Rows) -> None: ...

    def close(self) -> None: ...


def batch_id(after: Key, upto: Key) -> str:
    """A deterministic name for the batch (after, upto]: the same range always gets the same id."""
    text = f"{after[0]}:{after[1]}:{after[2]}-{upto[0]}:{upto[1]}:{upto[2]}"
    return f"{upto[0]:012d}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class Exporter:
    def __init__(self, feed: ExportFeed, sinks: Sequence[Sink], name: str = "analytics") -> None:
        if not sinks:
            raise ValueError("the exporter needs at least one sink: set NOETL_CLICKHOUSE_URL "
                             "or NOETL_EXPORT_DIR")
        self.feed = feed
        self.sinks = list(sinks)
        self.name = name
        self.last_batch = 0  # events in the last batch
        self.redone = False  # the last batch was a pending one written again (its size says nothing)
        self.exported: dict[str, int] = {}  # rows written by this exporter since it started
        self.failures = 0  # batches failed in a row

    @property
    def descriptions(self) -> list[str]:
        return [s.description for s in self.sinks]

    async def run_once(self, limit: int = BATCH) -> int:
        """Export the pending batch, or the next `limit` events; returns the events exported."""
        position = await self.feed.position(self.name)
        pending = position.get("pending")
        self.redone = bool(pending)
        if pending:
            after, upto, hi = key_of(pending["after"]), key_of(pending["upto"]), int(pending["hi"])
            events = await self.feed.events_between(after, upto)
        else:
            after = key_of(position.get("key"))
            hi = await self.feed.snapshot_hi()
            events = await self.feed.events_after(after, hi, limit)
            if not events:
                self.last_batch = 0
                return 0
            upto = events[-1].key
            chosen = {"key": list(after), "pending": {"after": list(after), "upto": list(upto), "hi": hi}}
            if not await self.feed.save_position(self.name, chosen, self.descriptions, position):
                log.info("exporter '%s': another exporter of this name moved the cursor; skipping a round",
                         self.name)
                self.last_batch = 0
                return 0
            position = chosen
        self.last_batch = len(events)
        started = time.perf_counter()
        rows = batch_rows(events, await self.feed.ended(ended_in(events), hi))
        ident = batch_id(after, upto)
        for sink in self.sinks:
            await asyncio.to_thread(sink.write, ident, rows)
        counts = rows.counts()
        if not await self.feed.save_done(self.name, {"key": list(upto)}, self.descriptions, counts, position):
            return 0  # another exporter of this name finished the same batch first (the same rows and ids)
        for table, n in counts.items():
            self.exported[table] = self.exported.get(table, 0) + n
        log.info("exported batch %s: %s in %.0f ms", ident, counts, (time.perf_counter() - started) * 1000)
        return len(events)

    async def catch_up(self, limit: int = BATCH, max_batches: int | None = None) -> int:
        """Export everything pending now (or `max_batches` batches); returns the events exported."""
        total = batches = 0
        while max_batches is None or batches < max_batches:
            total += await self.run_once(limit)
            batches += 1
            if self.last_batch < limit and not self.redone:
                break
        return total

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0, limit: int = BATCH) -> None:
        """Follow the log until `stop` is set. A failed batch stays pending (the cursor does not move);
        it is tried again after a backoff (poll_s doubling up to MAX_BACKOFF_S) and the error is saved."""
        while not stop.is_set():
            wait = poll_s
            try:
                await self.run_once(limit)
                self.failures = 0
                if self.last_batch >= limit or self.redone:
                    continue
            except Exception as exc:
                self.failures += 1
                wait = min(MAX_BACKOFF_S, poll_s * 2 ** min(self.failures, 10))
                message = describe_error(exc)
                log.warning("exporter '%s': a batch failed (%s); trying again in %.1f s", self.name, message,
                            wait)
                with contextlib.suppress(Exception):  # Postgres itself may be what is down
                    await self.feed.save_error(self.name, message, self.descriptions)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    def close(self) -> None:
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.close()


def describe_error(exc: BaseException) -> str:
    """One line: the error's type and message (the sinks' errors never carry passwords: they mask them)."""
    text = " ".join(str(exc).split())[:500]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def masked(url: str) -> str:
    """`url` with its password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def scrub(text: str, secrets: Mapping[str, Any]) -> str:
    """`text` with every secret value replaced by ***."""
    for value in secrets.values():
        if value:
            text = text.replace(str(value), "***")
    return text
