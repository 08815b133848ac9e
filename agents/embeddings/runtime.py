"""The embeddings of one process: the shared index, the embedder, the indexer (optionally following the
log as a task) and the similar-failure search, over the control plane's indexing feed.

    embeddings = EmbeddingsRuntime.open(IndexingFeed(stack.store), path=home / "qdrant")  # or url=...
    embeddings.start()                      # the indexer follows the event log in this process
    await embeddings.similar.for_execution(execution_id)
    await embeddings.close()

One cursor per index (`cursor_name`): pointing the same database at a new index indexes everything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from agents.embeddings.embedder import Embedder, MiniLMEmbedder
from agents.embeddings.index import VectorIndex
from agents.embeddings.indexer import Indexer
from agents.embeddings.similar import SimilarFailures
from control_plane.services.indexing import IndexingFeed

log = logging.getLogger(__name__)


def cursor_name(index: VectorIndex) -> str:
    return f"embeddings:{index.key}"


class EmbeddingsRuntime:
    def __init__(self, feed: IndexingFeed, index: VectorIndex, embedder: Embedder) -> None:
        self.feed = feed
        self.index = index
        self.embedder = embedder
        self.indexer = Indexer(feed, index, embedder, name=cursor_name(index))
        self.similar = SimilarFailures(index, embedder, feed)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, feed: IndexingFeed, *, path: Path | None = None, url: str | None = None,
             api_key: str | None = None, embedder: Embedder | None = None) -> EmbeddingsRuntime:
        """Open the process's index (IndexBusyError when another process holds the embedded one)."""
        embedder = embedder or MiniLMEmbedder()
        return cls(feed, VectorIndex.open(path=path, url=url, api_key=api_key, dim=embedder.dim), embedder)

    def start(self, poll_s: float = 1.0) -> None:
        """Follow the event log in a task of the running loop (the model loads in a thread first)."""
        if self._task is not None:
            return

        async def follow() -> None:
            load: Any = getattr(self.embedder, "load", None)
            if load is not None:
                await asyncio.to_thread(load)
            await self.indexer.run(self._stop, poll_s=poll_s)

        self._task = asyncio.create_task(follow(), name="noetl-indexer")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await asyncio.wait_for(self._task, 30)
                except TimeoutError:
                    log.warning("the indexer did not stop within 30 s; cancelled")
            self._task = None
        await asyncio.to_thread(self.index.close)
