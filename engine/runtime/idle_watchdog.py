"""Stop a data dir's embedded nats-server and PostgreSQL once nothing has used them for a while.

Every process that uses the embedded servers holds `lease(home)` while it runs: a shared flock on
HOME/servers.lease, whose mtime it touches when it takes and when it drops it. A one-off `noetl run`
that uses the embedded servers starts the watchdog (`spawn`): a detached
`python -m engine.runtime.idle_watchdog HOME SECONDS` that checks every second and, once it can take the
lease exclusively (no process uses the servers) and the lease was last touched SECONDS ago, stops both
servers while holding it (a process starting meanwhile waits, then starts them again) and exits. It also
exits when the servers are gone, or when `cancel` (what `noetl dev up` calls: the dev stack keeps its
servers until `noetl dev down`) sends it SIGTERM. One watchdog per data dir: it holds
HOME/idle-watchdog.lock, which names its pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from engine.runtime.embedded import pid_alive, running_nats, running_postgres, stop_nats, stop_postgres
from engine.runtime.reaper import reap_when_done

log = logging.getLogger(__name__)

LEASE = "servers.lease"
LOCK = "idle-watchdog.lock"
LOG = "idle-watchdog.log"
MODULE = "engine.runtime.idle_watchdog"
CHECK_S = 1.0  # how often the watchdog looks (less when the idle time is shorter)


@contextlib.contextmanager
def lease(home: Path) -> Iterator[None]:
    """Hold while using the embedded servers of `home`: the watchdog never stops them meanwhile."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LEASE
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)  # waits while the watchdog is stopping the servers
        os.utime(path)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.utime(path)  # idle counts from the end of the last use
            fcntl.flock(handle, fcntl.LOCK_UN)


def watchdog_pid(home: Path) -> int | None:
    """The pid of the watchdog of `home` while one runs, else None."""
    path = home / LOCK
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # the watchdog holds it
            with contextlib.suppress(ValueError):
                return int(handle.read().strip() or 0) or None
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def spawn(home: Path, idle_s: float) -> int | None:
    """Start the watchdog of `home` (detached: it outlives the caller) unless one runs; its pid if
    started. `idle_s` <= 0 starts none (never stop)."""
    if idle_s <= 0 or watchdog_pid(home) is not None:
        return None
    with (home / LOG).open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", MODULE, str(home), repr(float(idle_s))],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    reap_when_done(process, "watchdog")
    return process.pid


def cancel(home: Path, timeout_s: float = 10.0) -> bool:
    """Stop the watchdog of `home` without it stopping the servers; True when one was running."""
    pid = watchdog_pid(home)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def _stop_if_idle(home: Path, idle_s: float, since: float) -> str:
    """"busy" while a process holds the lease, "idle" while unused for less than `idle_s`, else stop
    the servers (holding the lease, so no process starts using them meanwhile) and "stopped"."""
    path = home / LEASE
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "busy"
        if time.time() - max(since, path.stat().st_mtime) < idle_s:
            return "idle"
        log.info("the servers of %s were unused for %g s: stopping them", home, idle_s)
        stop_nats(home)
        stop_postgres(home)
        return "stopped"


def watch(home: Path, idle_s: float) -> int:
    """The watchdog's loop (see the module's docstring); returns the exit code."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("a watchdog already watches %s", home)
            return 0
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        since = time.time()
        log.info("watching %s: the servers stop after %g s unused", home, idle_s)
        last = ""
        while True:
            if running_nats(home) is None and running_postgres(home) is None:
                log.info("the servers of %s are gone", home)
                return 0
            state = _stop_if_idle(home, idle_s, since)
            if state == "stopped":
                return 0
            if state != last:
                log.info("the servers of %s are %s", home, "in use" if state == "busy" else "unused")
                last = state
            time.sleep(min(CHECK_S, max(idle_s / 4, 0.05)))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: python -m {MODULE} HOME IDLE_SECONDS", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return watch(Path(argv[0]).expanduser().resolve(), float(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
