"""The embedded components start, are reused, stop and start again under one data directory."""

from __future__ import annotations

import gc
import socket
import warnings
from pathlib import Path

import psycopg
import pytest

from engine.runtime.embedded import EmbeddedError, running_nats, start_nats, start_postgres
from tests.harness.polling import wait_for


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def test_postgres_starts_is_reused_stops_and_restarts_with_its_data(tmp_path: Path) -> None:
    first = start_postgres(tmp_path)
    try:
        assert first.started
        with psycopg.connect(first.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("noetl",)
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        again = start_postgres(tmp_path)
        assert not again.started and again.pid == first.pid and again.dsn == first.dsn
        first.stop()
        assert not first.is_running()
        first.stop()  # idempotent
        restarted = start_postgres(tmp_path)
        assert restarted.started and restarted.pid != first.pid
        with psycopg.connect(restarted.dsn) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [(42,)]
    finally:
        start_postgres(tmp_path).stop()


def test_nats_starts_is_reused_stops_and_restarts(tmp_path: Path) -> None:
    first = start_nats(tmp_path)
    try:
        assert first.started and first.url.startswith("nats://127.0.0.1:")
        assert first.healthy() and _accepts_connections(first.port)
        again = start_nats(tmp_path)
        assert not again.started and again.pid == first.pid and again.url == first.url
        again.stop()  # a reused handle stops the server too
        assert not first.is_running() and not _accepts_connections(first.port)
        restarted = start_nats(tmp_path)
        assert restarted.started and restarted.pid != first.pid and restarted.healthy()
        restarted.stop()
        assert not restarted.is_running()
    finally:
        first.stop()


def test_a_nats_server_outlives_its_dropped_handle_without_a_resource_warning(tmp_path: Path) -> None:
    pid = start_nats(tmp_path).pid  # the handle is dropped at once, as a one-off `noetl run` does
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gc.collect()  # its Popen is still referenced (by its reaper): nothing to warn about
        running = running_nats(tmp_path)
        assert running is not None and running.pid == pid and running.healthy()
    finally:
        server = running_nats(tmp_path)
        if server is not None:
            server.stop()
    wait_for(lambda: running_nats(tmp_path) is None, timeout_s=10, what="nats-server to be forgotten")


def test_nats_on_a_requested_port_refuses_a_different_port_while_running(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_nats(tmp_path, port=port)
    try:
        assert server.port == port and server.url == f"nats://127.0.0.1:{port}"
        with pytest.raises(EmbeddedError, match=f"port {port}"):
            start_nats(tmp_path, port=port + 1)
    finally:
        server.stop()


def test_nats_with_a_missing_binary_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedError, match="does not exist"):
        start_nats(tmp_path, binary=tmp_path / "no-such-nats-server")


def test_nats_that_cannot_start_reports_its_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedError, match="log tail") as caught:
            start_nats(tmp_path, port=port)
    assert "address already in use" in str(caught.value).lower()


def test_each_test_gets_a_fresh_empty_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                              "WHERE table_schema = 'public'").fetchone()
        conn.execute("CREATE TABLE scratch (v int)")  # would collide if another test saw this database
    assert name is not None and name[0].startswith("test_") and tables == (0,)


def test_another_test_gets_another_fresh_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE scratch (v int)")
        assert conn.execute("SELECT count(*) FROM scratch").fetchone() == (0,)


def test_session_nats_server_is_healthy_and_prefixes_are_unique(nats_server, nats_url: str,
                                                                 nats_prefix: str) -> None:
    assert nats_server.healthy() and nats_url == nats_server.url
    assert nats_prefix.isalnum()
