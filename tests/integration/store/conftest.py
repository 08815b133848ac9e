"""Fixtures for the store tests: a migrated Database on a fresh Postgres database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from control_plane.store.db import Database
from control_plane.store.migrate import migrate


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[Database]:
    database = await Database.open(pg_dsn, min_size=1, max_size=20)
    await migrate(database)
    yield database
    await database.close()
