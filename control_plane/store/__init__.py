"""The control plane's Postgres store, home of all its SQL (catalog, events, executions, …): one `Store`."""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.store.catalog import CatalogStore
from control_plane.store.chat import ChatStore
from control_plane.store.credentials import CredentialStore
from control_plane.store.cursors import CursorStore
from control_plane.store.db import Database
from control_plane.store.events import EventStore
from control_plane.store.executions import ExecutionStore
from control_plane.store.indexing import IndexingStore
from control_plane.store.insights import InsightsStore
from control_plane.store.metrics import MetricsStore
from control_plane.store.migrate import migrate
from control_plane.store.partitions import PartitionTable
from control_plane.store.policies import PolicyStore
from control_plane.store.secret_key import SecretKey
from control_plane.store.sessions import SessionStore
from control_plane.store.timings import TimingStore
from control_plane.store.tokens import TokenStore
from control_plane.store.triggers import TriggerStore

__all__ = ["CatalogStore", "ChatStore", "CredentialStore", "CursorStore", "Database", "EventStore",
           "ExecutionStore", "IndexingStore", "MetricsStore", "PolicyStore", "SecretKey", "SessionStore",
           "Store", "TimingStore", "TokenStore", "TriggerStore", "open_store"]


@dataclass(frozen=True, slots=True)
class Store:
    """Every store over one connection pool. Close it with `await store.close()` (or `async with`)."""

    db: Database
    events: EventStore
    executions: ExecutionStore
    catalog: CatalogStore
    credentials: CredentialStore
    tokens: TokenStore
    cursors: CursorStore
    policies: PolicyStore
    indexing: IndexingStore
    metrics: MetricsStore
    timings: TimingStore
    chat: ChatStore
    sessions: SessionStore  # the web console's sessions and sign-in links
    partitions: PartitionTable  # the orchestrators and their partitions' leases (read-only here)
    insights: InsightsStore  # the step runs of recent executions, for the insights
    triggers: TriggerStore  # triggers, their firings and their events (docs/triggers.md)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def open_store(dsn: str, secret_key: SecretKey, *, run_migrations: bool = True, min_size: int = 1,
                     max_size: int = 10, connect_timeout_s: float = 10.0) -> Store:
    """Connect (DatabaseUnavailableError when Postgres does not answer within `connect_timeout_s`), apply
    pending migrations (unless told not to) and build every store."""
    db = await Database.open(dsn, min_size=min_size, max_size=max_size, timeout=connect_timeout_s)
    try:
        if run_migrations:
            await migrate(db)
    except BaseException:
        await db.close()
        raise
    executions = ExecutionStore(db)
    return Store(db=db, events=EventStore(db, executions), executions=executions, catalog=CatalogStore(db),
                 credentials=CredentialStore(db, secret_key), tokens=TokenStore(db),
                 cursors=CursorStore(db), policies=PolicyStore(db),
                 indexing=IndexingStore(db), metrics=MetricsStore(db), timings=TimingStore(db),
                 chat=ChatStore(db), sessions=SessionStore(db), partitions=PartitionTable(db),
                 insights=InsightsStore(db), triggers=TriggerStore(db, secret_key))
