"""The stack's supervisor on stand-in servers: a dead one is started again with backoff, one that keeps
dying is reported `crashed` and left alone until `reset()`."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import pytest

from control_plane import supervisor as supervision
from control_plane.supervisor import ServerSupervisor
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio
_pids = itertools.count(100)


@dataclass
class StandIn:
    pid: int
    alive: bool = True

    def is_running(self) -> bool:
        return self.alive


async def until(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    await poll(check, timeout_s=timeout_s, what="the supervisor's reaction")


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "POLL_S", 0.01)
    monkeypatch.setattr(supervision, "RESTART_BACKOFF_S", 0.01)
    monkeypatch.setattr(supervision, "RESTART_BACKOFF_MAX_S", 0.02)


async def test_a_dead_server_is_started_again_and_the_stack_learns_the_new_one() -> None:
    learned: list[tuple[str, int]] = []
    watcher = ServerSupervisor(on_restart=lambda name, server: learned.append((name, server.pid)))
    first = StandIn(next(_pids))
    watcher.watch_blocking("nats", first, lambda old: StandIn(next(_pids)))
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    first.alive = False
    await until(lambda: bool(learned))
    [state] = watcher.states()
    assert state["status"] == "up" and state["restarts"] == 1 and state["pid"] == learned[0][1] != first.pid
    stop.set()
    await task


async def test_a_failed_restart_is_tried_again_after_a_backoff_with_the_reason_shown() -> None:
    attempts: list[int] = []

    def restart(old: StandIn) -> StandIn:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("address already in use")
        return StandIn(next(_pids))

    watcher = ServerSupervisor()
    server = StandIn(next(_pids))
    watcher.watch_blocking("postgres", server, restart)
    seen: list[str | None] = []
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    server.alive = False
    await until(lambda: bool(attempts))
    await until(lambda: seen.append(watcher.states()[0]["detail"]) or watcher.states()[0]["status"] == "up")
    assert len(attempts) == 3 and any(d and "address already in use" in d for d in seen)
    stop.set()
    await task


async def test_a_server_that_keeps_crashing_is_reported_crashed_until_reset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "MAX_RESTARTS", 2)
    started: list[StandIn] = []

    def restart(old: StandIn) -> StandIn:
        started.append(StandIn(next(_pids), alive=False))  # dies at once
        return started[-1]

    watcher = ServerSupervisor()
    watcher.watch_blocking("nats", StandIn(next(_pids), alive=False), restart)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    await until(lambda: watcher.states()[0]["status"] == "crashed")
    assert len(started) == 2 and "not restarted again" in watcher.states()[0]["detail"]
    checked = watcher.cycles
    await until(lambda: watcher.cycles >= checked + 5)  # a crashed server is left alone
    assert len(started) == 2
    watcher.reset()
    await until(lambda: len(started) > 2)
    stop.set()
    await task
