"""Pytest fixtures: one embedded PostgreSQL per session, a fresh empty database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from engine.runtime.embedded import PG_SUPERUSER, EmbeddedPostgres, start_postgres


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server for the whole session, in a temporary data dir, stopped at the end."""
    server = start_postgres(Path(tmp_path_factory.mktemp("embedded-pg")))
    yield server
    server.stop()


@contextmanager
def fresh_database(server: EmbeddedPostgres, prefix: str = "test") -> Iterator[str]:
    """The DSN of a new, empty database on `server`, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = server.dsn_for(PG_SUPERUSER)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.dsn_for(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_dsn(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """The DSN of a new, empty database that only this test uses; dropped afterwards."""
    with fresh_database(pg_server) as dsn:
        yield dsn
