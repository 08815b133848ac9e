"""This machine's store and embeddings index, as the local commands open them.

The store is NOETL_PG_DSN's, else the running dev stack's, else the embedded PostgreSQL under NOETL_HOME
(started when needed). The embeddings index is NOETL_QDRANT_URL's, else the embedded one under
NOETL_HOME/qdrant; the agents' embeddings modules load only when one is opened (sentence-transformers
costs seconds to import).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from control_plane.store import Store, open_store
from control_plane.store.secret_key import load_secret_key
from engine.runtime.embedded import start_postgres
from noetl.devstack import running_dev_stack
from noetl.settings import qdrant_target, stack_config

CATCH_UP_BATCHES = 20  # `noetl why`: executions not indexed yet are indexed first, up to this many batches


async def store_dsn() -> str:
    config = stack_config()
    dev = running_dev_stack()
    if config.pg_dsn:
        return config.pg_dsn
    if dev is not None:
        return str(dev["pg_dsn"])
    return (await asyncio.to_thread(start_postgres, config.home)).dsn


async def open_local_store(**options: Any) -> Store:
    """The store this machine's NoETL uses (NOETL_PG_DSN, the dev stack's, or the embedded one);
    `options` go to open_store (e.g. connect_timeout_s)."""
    config = stack_config()
    return await open_store(await store_dsn(), load_secret_key(config.home, config.secret_key), **options)


class LocalEmbeddings:
    """`async with LocalEmbeddings() as embeddings`: the store and this process's embeddings runtime
    (agents.embeddings.runtime) over it, for one command."""

    async def __aenter__(self) -> Any:
        from agents.embeddings.runtime import EmbeddingsRuntime  # the embedding model's libraries: here only
        from control_plane.services.indexing import IndexingFeed

        self.store = await open_local_store()
        try:
            target = qdrant_target(stack_config().home)
            self.embeddings = EmbeddingsRuntime.open(IndexingFeed(self.store), **target)
        except BaseException:
            await self.store.close()
            raise
        return self.embeddings

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.embeddings.close()
        finally:
            await self.store.close()


async def similar_finder(store: Store) -> tuple[Any, Any, str | None]:
    """(finder, embeddings runtime to close, None) over this machine's embeddings index (brought up to
    date first), or (None, None, why not): no index yet, or it is held by another process."""
    try:  # optional: similar failures are evidence, a diagnosis is complete without them
        from agents.embeddings.index import IndexBusyError
        from agents.embeddings.runtime import EmbeddingsRuntime
        from control_plane.services.indexing import IndexingFeed
    except ImportError as exc:
        return None, None, f"similar-failure search is not installed ({exc.name})"
    target = qdrant_target(stack_config().home)
    if "path" in target and not Path(target["path"]).exists():
        return None, None, ("no embeddings index yet: run `noetl indexer start` (or `noetl similar ID` once) "
                            "to find similar past failures")
    try:
        embeddings = EmbeddingsRuntime.open(IndexingFeed(store), **target)
    except IndexBusyError as exc:
        return None, None, f"the embeddings index is in use by another process ({exc}); set NOETL_SERVER_URL"
    try:
        await embeddings.indexer.catch_up(max_batches=CATCH_UP_BATCHES)
    except Exception as exc:  # the search is evidence, not a precondition
        await embeddings.close()
        return None, None, (f"the embeddings index could not be brought up to date "
                            f"({type(exc).__name__}: {exc})")
    return embeddings.similar, embeddings, None
