"""The store says when Postgres is away: a lost connection or a refused one is a DatabaseUnavailableError
that is transient and gives the driver's reason in a few words; a server that answers "no" is not."""

from __future__ import annotations

import psycopg
import pytest

from control_plane.errors import DatabaseUnavailableError
from control_plane.store.db import Database
from engine.runtime.embedded import EmbeddedPostgres

pytestmark = pytest.mark.anyio


async def test_a_statement_whose_connection_was_killed_is_a_transient_error_and_the_next_one_works(
        pg_server: EmbeddedPostgres, pg_dsn: str) -> None:
    async with await Database.open(pg_dsn, min_size=1, max_size=1) as db:
        row = await db.fetch_one("SELECT pg_backend_pid() AS pid")
        assert row is not None
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (row["pid"],))
        with pytest.raises(DatabaseUnavailableError) as info:
            await db.fetch_one("SELECT 1 AS one")
        assert info.value.transient
        assert "the connection to Postgres was lost" in info.value.message
        assert "administrator command" in info.value.details["reason"]
        assert await db.fetch_one("SELECT 1 AS one") == {"one": 1}  # the pool replaced the connection


async def test_a_server_where_nothing_listens_is_transient_and_says_connection_refused() -> None:
    with pytest.raises(DatabaseUnavailableError) as info:
        await Database.open("postgresql://noetl:hunter2@127.0.0.1:1/none", timeout=1.0)
    assert info.value.transient
    assert info.value.details["reason"] == "Connection refused"
    assert "hunter2" not in str(info.value)


async def test_a_database_that_does_not_exist_is_not_transient(pg_server: EmbeddedPostgres) -> None:
    with pytest.raises(DatabaseUnavailableError) as info:
        await Database.open(pg_server.dsn_for("no_such_database_here"), timeout=1.0)
    assert not info.value.transient
    assert info.value.details["reason"] == 'database "no_such_database_here" does not exist'
