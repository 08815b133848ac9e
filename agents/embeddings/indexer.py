"""The indexer: follows the event log (ended executions, through control_plane.services.indexing) from
its stored cursor, turns each execution into documents, embeds them and upserts them into the index.

Restart-safe: the cursor is saved only after a batch is upserted, and point ids are deterministic, so a
crash between the two re-indexes the same points (replacing them, never adding any). A playbook version
is embedded once: its document is skipped when the index already has it. Embedding and the index's
blocking calls run in a thread (`asyncio.to_thread`): the event loop keeps serving.

Run it in the server's process (`Indexer(...).run(stop)` as a task) or alone (`noetl indexer start`).
`optimize_every` (off by default) builds the embedded index's HNSW graph once that many new failure
points came in and the feed is idle: the embedded engine holds the GIL while it builds (~20-40 s at 100k
points, the whole process frozen), so only a process of its own (`noetl indexer start`) turns it on;
without it searches are exact (evals/benchmarks/similar_query.py measures both).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agents.embeddings.documents import Document, ExecutionSource, documents_of
from agents.embeddings.embedder import Embedder
from agents.embeddings.index import VectorIndex

log = logging.getLogger(__name__)

BATCH = 50  # executions per read of the feed


class Feed(Protocol):
    """What the indexer reads (control_plane.services.indexing.IndexingFeed)."""

    async def ended_after(self, position: Mapping[str, Any] | None,
                          limit: int = 50) -> tuple[Sequence[ExecutionSource], dict[str, Any]]: ...

    async def get_cursor(self, name: str) -> dict[str, Any] | None: ...

    async def set_cursor(self, name: str, position: Mapping[str, Any]) -> None: ...


class Indexer:
    def __init__(self, feed: Feed, index: VectorIndex, embedder: Embedder, name: str = "default", *,
                 optimize_every: int | None = None) -> None:
        if embedder.dim != index.dim:
            raise ValueError(f"the embedder gives {embedder.dim} dimensions, the index holds {index.dim}")
        self.feed = feed
        self.index = index
        self.embedder = embedder
        self.name = name
        self.last_batch = 0  # executions read by the last run_once
        self.indexed = 0  # documents upserted by this indexer since it started
        self.optimize_every = optimize_every
        self._since_optimize = 0
        self._checked = False

    async def run_once(self, limit: int = BATCH) -> int:
        """Index the next `limit` ended executions; returns the number of documents upserted."""
        position = await self.feed.get_cursor(self.name)
        if not self._checked:
            self._checked = True
            if position and await asyncio.to_thread(self.index.count, "execution") == 0:
                log.warning("indexer '%s': the index is empty but the cursor is not (a new index "
                            "directory?): indexing everything again", self.name)
                position = None
        executions, new_position = await self.feed.ended_after(position, limit)
        self.last_batch = len(executions)
        if not executions:
            return 0
        documents = await asyncio.to_thread(self._documents, executions)
        if documents:
            started = time.perf_counter()
            vectors = await asyncio.to_thread(self.embedder.embed, [d.text for d in documents])
            await asyncio.to_thread(self.index.upsert, documents, vectors)
            log.info("indexed %d documents of %d executions in %.0f ms", len(documents), len(executions),
                     (time.perf_counter() - started) * 1000)
        await self.feed.set_cursor(self.name, new_position)
        self.indexed += len(documents)
        self._since_optimize += sum(1 for d in documents if d.kind == "failure")
        return len(documents)

    async def catch_up(self, limit: int = BATCH, max_batches: int | None = None) -> int:
        """Index everything ended so far (or `max_batches` batches); returns the documents upserted."""
        total = batches = 0
        while max_batches is None or batches < max_batches:
            total += await self.run_once(limit)
            batches += 1
            if self.last_batch < limit:
                break
        return total

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0, limit: int = BATCH) -> None:
        """Follow the feed until `stop` is set; a failed batch is logged and tried again after `poll_s`."""
        while not stop.is_set():
            try:
                await self.run_once(limit)
                if self.last_batch >= limit:
                    continue  # more is waiting
                if self.optimize_every and self._since_optimize >= self.optimize_every:
                    self._since_optimize = 0
                    await asyncio.to_thread(self.index.optimize, "failure")
            except Exception:  # keep following: the next batch may go through (Postgres back, ...)
                log.exception("indexer '%s': a batch failed; trying again in %.1f s", self.name, poll_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    def _documents(self, executions: Sequence[ExecutionSource]) -> list[Document]:
        documents: dict[str, Document] = {}
        for execution in executions:
            try:
                for document in documents_of(execution):
                    documents.setdefault(document.id, document)
            except Exception:  # one odd execution must not stop the indexer
                log.exception("indexer: cannot build the documents of execution %s", execution.execution_id)
        playbooks = [d.id for d in documents.values() if d.kind == "playbook"]
        for known in self.index.retrieve("playbook", playbooks):
            documents.pop(known, None)
        return list(documents.values())
