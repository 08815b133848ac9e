"""The command line rides through an outage of Postgres, NATS or the API server (issue 16): one notice on
stderr when it starts, silence when it ends, one error line and exit 3 when it lasts longer than
NOETL_OUTAGE_WAIT_S; `--timeout` ending first prints one line and exits 4. Never a traceback.

The servers are killed with SIGKILL, so this module has a private stack (`noetl dev up` in a fresh
NOETL_HOME, `noetl dev down` at the end). The stack's supervisor starts a dead server again at once; to
keep one down, a test holds the file lock its data dir is started under (engine.runtime.embedded takes
NOETL_HOME/postgres.lock and NOETL_HOME/nats.lock), then lets go and starts it itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from engine.runtime.embedded import EmbeddedError, pid_alive, start_nats, start_postgres
from tests.conftest import REPO
from tests.e2e.helpers import Noetl, dev_stack, make_playbook
from tests.harness.playbooks import held_until
from tests.harness.polling import wait_for

SHORT_WAIT_S = "1"  # NOETL_OUTAGE_WAIT_S of a command that should give up
LONG_WAIT_S = "60"  # ... of one that should still be waiting when the server comes back
RESTART_S = 60.0  # how long a server may take to start again
NOTICE_S = 60.0  # how long a command may take to print its notice (a CLI start-up and a connect timeout)
CLIENT_COMMANDS = [("status", "1"), ("events", "1"), ("execute", "playbook", "e2e/x", "--wait")]
NOTICE = re.compile(r"^waiting for (Postgres|NATS|the NoETL server)( at \S.*)?: .+ \(up to \d+ s\)$")


def holds_until(flag: Path) -> str:
    """A playbook whose one step, `hold`, runs until `flag` exists (at most two minutes)."""
    return make_playbook(f"outage_{uuid.uuid4().hex[:8]}", held_until(flag, step="hold", deadline_s=120))


@dataclass(frozen=True)
class Stack:
    cli: Noetl
    api_url: str
    token: str

    @property
    def home(self) -> Path:
        return self.cli.home

    def client(self, url: str | None = None) -> Noetl:
        """The command line in client mode (NOETL_SERVER_URL), against this stack's API or `url`."""
        return replace(self.cli, env={**self.cli.env, "NOETL_SERVER_URL": url or self.api_url,
                                      "NOETL_TOKEN": self.token})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with dev_stack(tmp_path_factory.mktemp("noetl-outages"), tmp_path_factory.mktemp("outage-playbooks"),
                   2) as cli:
        token = cli("token", "create", "--role", "operator", "--name", "outages", "--json")
        assert token.returncode == 0, token.stderr
        state = json.loads((cli.home / "dev.json").read_text())
        yield Stack(cli, state["api_url"], json.loads(token.stdout)["token"])


@pytest.fixture(scope="module")
def finished(stack: Stack) -> str:
    """The id of an execution that completed before any outage."""
    flag = stack.cli.scratch / f"released-{uuid.uuid4().hex[:8]}"
    flag.touch()
    code, doc = stack.cli.run_json(holds_until(flag))
    assert (code, doc["status"]) == (0, "completed"), doc
    return str(doc["execution_id"])


# ---------------------------------------------------------------------- taking servers down
@contextmanager
def held(lock_file: Path) -> Iterator[Callable[[], None]]:
    """The data dir's start lock held (nobody can start its server) until `release()` or the end."""
    handle = lock_file.open("a")
    fcntl.flock(handle, fcntl.LOCK_EX)

    def release() -> None:
        if not handle.closed:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    try:
        yield release
    finally:
        release()


def started_postgres(home: Path) -> bool:
    with suppress(EmbeddedError):  # the killed server's processes may still be going away
        return start_postgres(home).is_running()
    return False


@contextmanager
def postgres_down(home: Path) -> Iterator[Callable[[], None]]:
    """The stack's Postgres killed (SIGKILL of its postmaster) and kept down until `bring_back()` (or the
    end of the block), which starts it again with engine.runtime.embedded.start_postgres."""
    pid = int((home / "postgres" / "postmaster.pid").read_text().split()[0])
    with held(home / "postgres.lock") as release:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), timeout_s=RESTART_S, what=f"postmaster {pid} to exit")

        def bring_back() -> None:
            release()
            wait_for(lambda: started_postgres(home), timeout_s=RESTART_S, what="Postgres to start again")

        try:
            yield bring_back
        finally:
            bring_back()


@contextmanager
def nats_down(home: Path) -> Iterator[None]:
    """The stack's nats-server killed and kept down for the block, then started again on its port."""
    state = json.loads((home / "nats" / "server.json").read_text())
    with held(home / "nats.lock") as release:
        os.kill(int(state["pid"]), signal.SIGKILL)
        wait_for(lambda: not pid_alive(int(state["pid"])), timeout_s=RESTART_S, what="nats-server to exit")
        try:
            yield
        finally:
            release()
            start_nats(home, port=int(state["port"]))


# ---------------------------------------------------------------------- commands in the background
@dataclass
class Background:
    """A command running in the background; its stderr goes to a file the test can read meanwhile."""

    process: subprocess.Popen[str]
    stderr_file: Path

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    def wait_for_line(self, pattern: re.Pattern[str], what: str, timeout_s: float = NOTICE_S) -> str:
        def found() -> str | None:
            assert self.process.poll() is None or any(pattern.search(x) for x in self.lines()), \
                f"the command ended (exit {self.process.returncode}) before {what}: {self.stderr}"
            return next((line for line in self.lines() if pattern.search(line)), None)

        return str(wait_for(found, timeout_s=timeout_s, what=what))

    def finish(self, timeout_s: float = 120.0) -> tuple[int, str, str]:
        try:
            out, _ = self.process.communicate(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        return self.process.returncode, out, self.stderr


def background(cli: Noetl, *args: str, **env: str) -> Background:
    stderr_file = cli.scratch / f"stderr-{uuid.uuid4().hex[:8]}.txt"
    with stderr_file.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "noetl.cli", *args], stdout=subprocess.PIPE,
                                   stderr=err, stdin=subprocess.DEVNULL, text=True, cwd=REPO,
                                   env={**cli.env, **env})
    return Background(process, stderr_file)


def with_wait(cli: Noetl, seconds: str) -> Noetl:
    return replace(cli, env={**cli.env, "NOETL_OUTAGE_WAIT_S": seconds})


def assert_gave_up(stderr: str, what: str) -> None:
    """A notice, then one error line naming what stayed away; nothing else, no traceback."""
    lines = [line for line in stderr.splitlines() if not line.startswith("execution ")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 2, stderr
    assert NOTICE.match(lines[0]) and lines[0].startswith(f"waiting for {what}"), stderr
    assert lines[1].startswith(f"error: {what}") and " is still unreachable after 1 s: " in lines[1], stderr


# ---------------------------------------------------------------------- --timeout
def test_run_whose_timeout_ends_first_prints_one_line_naming_the_execution_and_exits_4(stack: Stack) -> None:
    flag = stack.cli.scratch / f"release-{uuid.uuid4().hex[:8]}"
    result = stack.cli("run", str(stack.cli.write(holds_until(flag))), "--timeout", "1")
    try:
        assert result.returncode == 4, result.stderr
        assert "Traceback" not in result.stderr
        header, line = result.stderr.strip().splitlines()
        execution_id = header.removeprefix("execution ")
        expected = (rf"execution {execution_id} did not finish within 1 s; it is still (pending|running) "
                    rf"\(follow it with `noetl status {execution_id}`\)")
        assert re.fullmatch(expected, line), line
        status = stack.cli("status", execution_id)
        assert status.returncode == 4 and status.stdout.startswith(f"execution {execution_id}: "), status
    finally:
        flag.touch()


def test_run_json_whose_timeout_ends_first_prints_the_document_so_far_and_exits_4(stack: Stack) -> None:
    flag = stack.cli.scratch / f"release-{uuid.uuid4().hex[:8]}"
    result = stack.cli("run", str(stack.cli.write(holds_until(flag))), "--timeout", "1", "--json")
    try:
        assert result.returncode == 4, result.stderr
        doc = json.loads(result.stdout)
        assert doc["status"] in ("pending", "running"), doc
        assert result.stderr.strip() == (
            f"execution {doc['execution_id']} did not finish within 1 s; it is still {doc['status']} "
            f"(follow it with `noetl status {doc['execution_id']}`)")
    finally:
        flag.touch()


# ---------------------------------------------------------------------- Postgres
@pytest.mark.parametrize("mode", ["local", "client"])
def test_status_while_postgres_stays_down_prints_a_notice_then_one_error_and_exits_3(
        stack: Stack, finished: str, mode: str) -> None:
    cli = with_wait(stack.cli if mode == "local" else stack.client(), SHORT_WAIT_S)
    with postgres_down(stack.home):
        result = cli("status", finished)
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert_gave_up(result.stderr, "Postgres" if mode == "local" else "the NoETL server")


@pytest.mark.parametrize("mode", ["local", "client"])
def test_status_waits_for_postgres_to_come_back_and_then_answers_after_one_notice(
        stack: Stack, finished: str, mode: str) -> None:
    cli = stack.cli if mode == "local" else stack.client()
    with postgres_down(stack.home) as bring_back:
        command = background(cli, "status", finished, NOETL_OUTAGE_WAIT_S=LONG_WAIT_S)
        command.wait_for_line(NOTICE, "the notice")
        bring_back()
        code, out, err = command.finish()
    assert code == 0, err
    assert out.splitlines()[0] == f"execution {finished}: completed"
    assert len(err.splitlines()) == 1 and NOTICE.match(err.strip()), err


def test_run_whose_postgres_dies_mid_run_and_stays_down_exits_3_with_one_error_line(stack: Stack) -> None:
    flag = stack.cli.scratch / f"release-{uuid.uuid4().hex[:8]}"
    command = background(stack.cli, "run", str(stack.cli.write(holds_until(flag))),
                         NOETL_OUTAGE_WAIT_S=SHORT_WAIT_S)
    try:
        command.wait_for_line(re.compile(r"^execution \d+$"), "the run to start")
        with postgres_down(stack.home):
            code, out, err = command.finish()
    finally:
        flag.touch()
    assert code == 3, err
    assert_gave_up(err, "Postgres")
    assert "noetl status" in err.splitlines()[-1]  # how to follow the execution that may still run


def test_run_rides_through_a_postgres_crash_and_completes_after_one_notice(stack: Stack) -> None:
    flag = stack.cli.scratch / f"release-{uuid.uuid4().hex[:8]}"
    command = background(stack.cli, "run", str(stack.cli.write(holds_until(flag))),
                         NOETL_OUTAGE_WAIT_S=LONG_WAIT_S)
    try:
        execution_id = command.wait_for_line(re.compile(r"^execution \d+$"), "the run to start").split()[1]
        wait_for(lambda: step_status(stack.cli, execution_id, "hold") == "running", timeout_s=NOTICE_S,
                   what="the step to run")
        with postgres_down(stack.home) as bring_back:
            command.wait_for_line(NOTICE, "the notice")
            bring_back()
        flag.touch()
        code, _, err = command.finish()
    finally:
        flag.touch()
    assert code == 0, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("waiting for ")] == \
        [next(line for line in err.splitlines() if NOTICE.match(line))], err
    assert f"execution {execution_id} completed" in err.splitlines(), err
    assert step_status(stack.cli, execution_id, "hold") == "succeeded"


def step_status(cli: Noetl, execution_id: str, step: str) -> str | None:
    result = cli("status", execution_id, "--json")
    if not result.stdout:
        return None
    return (json.loads(result.stdout)["steps"].get(step) or {}).get("status")


# ---------------------------------------------------------------------- NATS, the API server
def test_run_while_nats_stays_down_prints_a_notice_then_one_error_and_exits_3(stack: Stack) -> None:
    flag = stack.cli.scratch / "never"
    with nats_down(stack.home):
        result = with_wait(stack.cli, SHORT_WAIT_S)("run", str(stack.cli.write(holds_until(flag))))
    assert result.returncode == 3, result.stderr
    assert_gave_up(result.stderr, "NATS")


@pytest.mark.parametrize("args", CLIENT_COMMANDS,
                         ids=["status", "events", "execute"])
def test_a_client_whose_api_server_is_unreachable_prints_a_notice_then_one_error_and_exits_3(
        stack: Stack, args: tuple[str, ...]) -> None:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    result = with_wait(stack.client(closed), SHORT_WAIT_S)(*args)
    assert result.returncode == 3, result.stderr
    assert_gave_up(result.stderr, "the NoETL server")
    assert closed in result.stderr
