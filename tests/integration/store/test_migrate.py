"""Migrations: applied once even when callers race, recorded with checksums, rolled back on failure."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psycopg
import pytest

from control_plane.errors import DatabaseUnavailableError, MigrationError
from control_plane.store import SecretKey, open_store
from control_plane.store.db import Database
from control_plane.store.migrate import MIGRATIONS_DIR, applied_versions, discover, migrate

pytestmark = pytest.mark.anyio


async def test_racing_migrations_apply_each_file_once(pg_dsn: str) -> None:
    pools = [await Database.open(pg_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(p) for p in pools))
        every = [m.version for m in discover()]
        assert sorted(v for r in results for v in r) == every  # each version applied by exactly one caller
        assert await applied_versions(pools[0]) == every
        assert await migrate(pools[0]) == []
        rows = await pools[0].fetch_all("SELECT count(*) AS n FROM schema_migrations")
        assert rows[0]["n"] == len(every)
    finally:
        for p in pools:
            await p.close()


async def test_applied_versions_is_empty_before_the_first_migrate(pg_dsn: str) -> None:
    async with await Database.open(pg_dsn) as db:
        assert await applied_versions(db) == []


async def test_a_failing_migration_is_rolled_back_and_named(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT no_such_function();")
    async with await Database.open(pg_dsn) as db:
        with pytest.raises(MigrationError, match="0002_bad.sql") as info:
            await migrate(db, directory=tmp_path)
        assert "no_such_function" in str(info.value)
        assert await applied_versions(db) == [1]
        row = await db.fetch_one("SELECT to_regclass('b') IS NULL AS absent")
        assert row is not None and row["absent"]
        (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int);")
        assert await migrate(db, directory=tmp_path) == [2]


async def test_a_migration_changed_after_it_was_applied_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    async with await Database.open(pg_dsn) as db:
        await migrate(db, directory=directory)
        first = sorted(directory.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(db, directory=directory)


def test_migration_file_names_are_checked(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        discover(tmp_path)


async def test_an_unreachable_server_is_a_clear_error() -> None:
    dsn = "postgresql://noetl:hunter2@127.0.0.1:1/none?connect_timeout=1"
    with pytest.raises(DatabaseUnavailableError) as info:
        await Database.open(dsn, timeout=1.0)
    assert "hunter2" not in str(info.value)
    assert "NOETL_PG_DSN" in str(info.value)


async def test_the_event_log_refuses_updates_and_deletes(db: Database) -> None:
    await db.execute("INSERT INTO executions (execution_id, playbook_path, playbook_version) "
                     "VALUES ('e', 'p', 1)")
    await db.execute("INSERT INTO events (execution_id, seq, event_id, idempotency_key, type, derived, "
                     "occurred_at, body) VALUES ('e', 1, 'x', 'x', 'execution.started', false, now(), '{}')")
    for statement in ("UPDATE events SET type = 'step.failed'", "DELETE FROM events"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await db.execute(statement)  # type: ignore[arg-type]


async def test_open_store_migrates_and_wires_every_store(pg_dsn: str) -> None:
    async with await open_store(pg_dsn, SecretKey.generate()) as store:
        assert await applied_versions(store.db) == [m.version for m in discover()]
        assert store.events.executions is store.executions
        await store.events.create_execution("e", playbook_path="p", playbook_version=1, playbook_text="",
                                            payload={})
        assert (await store.executions.get("e")).status == "pending"
        assert await store.catalog.list() == [] and await store.credentials.list() == []
