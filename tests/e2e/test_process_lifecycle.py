"""Nothing outlives its purpose (issue 16): the worker processes of a killed `noetl dev serve` and their
python interpreters exit by themselves, `noetl dev down` leaves no process of the home, and the embedded
servers a one-off `noetl run` started stop once unused for NOETL_IDLE_STOP, while a dev stack keeps them.

Each test has its own NOETL_HOME, and finds that home's processes in /proc by their command line (the
servers name their data directories) or their environment (NOETL_HOME, inherited by every process the
CLI starts). Every wait is a bounded poll; whatever a test started is stopped at its end, even on failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO
from tests.e2e.helpers import dev_stack, make_playbook
from tests.harness.polling import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")

SERVERS = ("nats-server", "postgres")  # process names (/proc/PID/comm) of the embedded servers
STOP_S = 30.0  # how long anything may take to stop

BUSY = """\
workload: {marker: ""}
workflow:
  - step: busy
    tool:
      kind: python
      input: {marker: "{{ workload.marker }}"}
      code: |
        import pathlib, subprocess
        child = subprocess.Popen(["sleep", "600"])
        pathlib.Path(marker).write_text(str(child.pid))
        child.wait()
"""


def processes_of(home: Path) -> dict[int, str]:
    """pid -> "name: command line" of every live process whose command line or environment names `home`."""
    needle, env = str(home).encode(), b"NOETL_HOME=" + str(home).encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError, IndexError):
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # exited, not yet reaped
            cmdline = (entry / "cmdline").read_bytes()
            if needle in cmdline or env in (entry / "environ").read_bytes().split(b"\0"):
                name = (entry / "comm").read_text().strip()
                found[int(entry.name)] = name + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def not_servers(home: Path) -> dict[int, str]:
    return {pid: what for pid, what in processes_of(home).items() if what.split(":")[0] not in SERVERS}


UNSET = ("NOETL_NATS_URL", "NOETL_PG_DSN", "NOETL_SECRET_KEY", "NOETL_BUS_PREFIX", "NOETL_POOLS",
         "NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_API_PORT", "NOETL_IDLE_STOP")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI call on the embedded servers under `home`."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "NOETL_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}


@contextlib.contextmanager
def cleaned_up(home: Path) -> Iterator[None]:
    """At the end, even on failure: `noetl dev down`, then SIGKILL whatever process of `home` is left."""
    try:
        yield
    finally:
        subprocess.run([sys.executable, "-m", "noetl.cli", "dev", "down"], env=cli_env(home), cwd=REPO,
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        for pid in processes_of(home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_killed_dev_serving_process_leaves_no_worker_python_interpreter_or_step_child_and_dev_down_the_rest(
        tmp_path: Path) -> None:
    home, scratch = tmp_path / "home", tmp_path / "playbooks"
    home.mkdir()
    scratch.mkdir()
    marker = tmp_path / "busy.pid"
    with cleaned_up(home), dev_stack(home, scratch, concurrency=2) as cli:
        # a step is running: its python interpreter waits on a child process of its own
        file = cli.write(make_playbook("orphans_busy", BUSY))
        run = subprocess.Popen([sys.executable, "-m", "noetl.cli", "run", str(file), "--timeout", "300",
                                "--payload", json.dumps({"marker": str(marker)})],
                               env=cli.env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: marker.exists() and marker.read_text().strip(), timeout_s=120,
                     what="the busy step to start")
        finally:
            run.kill()
            run.wait(10)
        grandchild = int(marker.read_text())
        before = not_servers(home)
        assert grandchild in before and any("control_plane.worker_process" in w for w in before.values()) \
            and any("engine.tools.python_runner" in w for w in before.values()), before

        serving = int(json.loads((home / "dev.json").read_text())["pid"])
        os.kill(serving, signal.SIGKILL)
        wait_for(lambda: not not_servers(home), timeout_s=STOP_S, detail=lambda: not_servers(home),
                 what="the workers, their python interpreters and the step's child process to exit")
        assert "is gone; stopping" in (home / "worker-default.log").read_text(errors="replace")
        assert any(w.split(":")[0] in SERVERS for w in processes_of(home).values())  # the servers stay

        down = cli("dev", "down", timeout=120)
        assert down.returncode == 0, down.stderr
        wait_for(lambda: not processes_of(home), timeout_s=STOP_S, what="no process of the home",
                 detail=lambda: processes_of(home))


def test_dev_down_stops_worker_processes_whose_serving_process_was_killed(tmp_path: Path) -> None:
    home, scratch = tmp_path / "home", tmp_path / "playbooks"
    home.mkdir()
    scratch.mkdir()
    with cleaned_up(home), dev_stack(home, scratch, concurrency=1) as cli:
        workers = sorted(p for p, w in processes_of(home).items() if "control_plane.worker_process" in w)
        assert workers, processes_of(home)
        for pid in workers:  # as if the worker were stuck: it cannot notice its parent's death
            os.kill(pid, signal.SIGSTOP)
        os.kill(int(json.loads((home / "dev.json").read_text())["pid"]), signal.SIGKILL)
        down = cli("dev", "down", timeout=120)
        assert down.returncode == 0, down.stderr
        assert json.loads(down.stdout)["stopped_workers"] == workers
        wait_for(lambda: not processes_of(home), timeout_s=STOP_S, what="no process of the home",
                 detail=lambda: processes_of(home))


def test_servers_a_one_off_run_started_stop_once_unused_for_NOETL_IDLE_STOP(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(home, NOETL_IDLE_STOP="2s")
    with cleaned_up(home):
        ran = subprocess.run([sys.executable, "-m", "noetl.cli", "run", str(EXAMPLES / "01_hello.yaml"),
                              "--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=180,
                             stdin=subprocess.DEVNULL)
        assert ran.returncode == 0 and json.loads(ran.stdout)["status"] == "completed", ran.stderr
        wait_for(lambda: not processes_of(home), timeout_s=60, detail=lambda: processes_of(home),
                 what="the nats-server, PostgreSQL and the idle watchdog of the home to exit")
        log = (home / "idle-watchdog.log").read_text(errors="replace")
        assert "unused for 2 s: stopping them" in log and "stopped nats-server" in log \
            and "stopped PostgreSQL" in log, log


def test_noetl_dev_up_cancels_the_idle_watchdog_and_keeps_its_servers(tmp_path: Path) -> None:
    home, scratch = tmp_path / "home", tmp_path / "playbooks"
    scratch.mkdir()
    with cleaned_up(home):
        env = cli_env(home, NOETL_IDLE_STOP="10m")
        ran = subprocess.run([sys.executable, "-m", "noetl.cli", "run", str(EXAMPLES / "01_hello.yaml")],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=180,
                             stdin=subprocess.DEVNULL)
        assert ran.returncode == 0, ran.stderr
        watchdogs = [pid for pid, w in processes_of(home).items() if "engine.runtime.idle_watchdog" in w]
        assert len(watchdogs) == 1, processes_of(home)
        servers = {int(json.loads((home / "nats" / "server.json").read_text())["pid"]),
                   int((home / "postgres" / "postmaster.pid").read_text().split()[0])}

        with dev_stack(home, scratch, concurrency=1) as cli:
            assert not [p for p, w in processes_of(home).items() if "engine.runtime.idle_watchdog" in w]
            cli.env["NOETL_IDLE_STOP"] = "1s"  # a run through the dev stack starts no watchdog
            code, doc = cli.run_json(EXAMPLES / "01_hello.yaml")
            assert (code, doc["status"]) == (0, "completed"), doc
            now = processes_of(home)
            assert not [p for p, w in now.items() if "engine.runtime.idle_watchdog" in w], now
            assert servers <= set(now)  # the same servers, reused and still running
            with (home / "servers.lease").open("a") as lease:  # held by the dev stack: no watchdog stops them
                with pytest.raises(BlockingIOError):
                    fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
        wait_for(lambda: not processes_of(home), timeout_s=STOP_S, what="no process of the home",
                 detail=lambda: processes_of(home))


def test_an_invalid_NOETL_IDLE_STOP_is_reported_with_the_valid_forms(tmp_path: Path) -> None:
    ran = subprocess.run([sys.executable, "-m", "noetl.cli", "run", str(EXAMPLES / "01_hello.yaml")],
                         env=cli_env(tmp_path / "home", NOETL_IDLE_STOP="soon"), cwd=REPO,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert ran.returncode == 3
    assert "NOETL_IDLE_STOP is 'soon', not a duration" in ran.stderr and "15m" in ran.stderr
    assert not (tmp_path / "home" / "nats").exists()  # nothing was started
