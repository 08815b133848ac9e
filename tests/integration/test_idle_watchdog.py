"""The idle watchdog (engine.runtime.idle_watchdog) against a real nats-server: it never stops the
servers while a process holds their lease, stops them once the lease has been free for the idle time,
and `cancel` ends it without stopping them. Every wait is a bounded poll."""

from __future__ import annotations

from pathlib import Path

from engine.runtime.embedded import pid_alive, start_nats
from engine.runtime.idle_watchdog import LOG, cancel, lease, spawn, watchdog_pid
from tests.harness.polling import wait_for


def _log(home: Path) -> str:
    path = home / LOG
    return path.read_text(errors="replace") if path.exists() else ""


def test_the_watchdog_waits_while_the_servers_are_leased_then_stops_them_once_unused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    nats = start_nats(home)
    try:
        with lease(home):
            pid = spawn(home, 0.2)
            assert pid is not None
            wait_for(lambda: "are in use" in _log(home), timeout_s=30, what="the watchdog to look",
                     detail=lambda: _log(home))
            assert nats.is_running() and watchdog_pid(home) == pid
            assert spawn(home, 0.2) is None  # one watchdog per home
        wait_for(lambda: not nats.is_running(), timeout_s=30, what="the unused nats-server to stop",
                 detail=lambda: _log(home))
        wait_for(lambda: not pid_alive(pid), timeout_s=30, what="the watchdog to exit")
        assert watchdog_pid(home) is None
    finally:
        cancel(home)
        nats.stop()


def test_a_cancelled_watchdog_exits_and_leaves_the_servers_running(tmp_path: Path) -> None:
    home = tmp_path / "home"
    nats = start_nats(home)
    try:
        pid = spawn(home, 600)
        assert pid is not None
        wait_for(lambda: watchdog_pid(home) == pid, timeout_s=30, what="the watchdog to start")
        assert cancel(home) and not pid_alive(pid)
        assert nats.is_running() and nats.healthy()
        assert not cancel(home)  # none left
    finally:
        cancel(home)
        nats.stop()


def test_no_watchdog_is_started_when_the_idle_time_is_zero(tmp_path: Path) -> None:
    assert spawn(tmp_path, 0) is None and watchdog_pid(tmp_path) is None
