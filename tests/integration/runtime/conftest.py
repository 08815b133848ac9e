"""A NoETL runtime per test on the session's real nats-server and a fresh Postgres database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from control_plane.stack import Stack
from tests.harness import runtime
from tests.harness.polling import poll
from tests.harness.runtime import stack_config_of

runtime_env = runtime.runtime_env


@pytest.fixture
async def stack(runtime_env: dict[str, str]) -> AsyncIterator[Stack]:
    """Orchestrator and a worker pool in this process."""
    async with Stack(stack_config_of(runtime_env, workers={"default": 4})) as running:
        yield running


@pytest.fixture
async def client(runtime_env: dict[str, str]) -> AsyncIterator[Stack]:
    """Only the store and the bus: the runtime's processes are started by the test."""
    async with Stack(stack_config_of(runtime_env, orchestrator=False, workers={})) as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Each phase's report on the test item, so that `spawn` knows whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def spawn(runtime_env: dict[str, str], tmp_path: Path,
          request: pytest.FixtureRequest) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `noetl ARGS` as a real process of this runtime; every one is killed at the end, and when the
    test failed the end of each one's log is printed (the temporary directory may not outlive the run)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"proc-{len(processes)}.log", "wb") as log:  # the process has its own copy
            process = subprocess.Popen([sys.executable, "-m", "noetl.cli", *args], env=runtime_env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for index, process in enumerate(processes):
            log = (tmp_path / f"proc-{index}.log").read_bytes().decode(errors="replace")
            print(f"\n--- noetl {' '.join(map(str, process.args[3:]))} (exit {process.returncode}), "
                  f"last 4000 characters of its log ---\n{log[-4000:]}")


async def register(client: Stack, body: str) -> str:
    """Register a playbook of `body` (its workflow and more) under a unique name; its catalog path."""
    assert client.executions is not None
    text = (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: t_{uuid.uuid4().hex[:8]}}}\n"
            + textwrap.dedent(body))
    return (await client.executions.register(text)).path


async def step_started(client: Stack, execution_id: str, timeout_s: float = 60.0) -> None:
    """Wait until a step of the execution has started on a worker."""
    store = client.store
    assert store is not None

    async def started() -> bool:
        return any(e.type == "step.started" for e in await store.events.events(execution_id))
    await poll(started, timeout_s=timeout_s, what="a step to start")


async def long_step_on_processes(client: Stack, spawn: Callable[..., subprocess.Popen[bytes]], code: str
                                 ) -> tuple[str, subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """A playbook of one step, `long`, running the python `code` on a server and a worker started as
    processes: started, and its step started on the worker. (execution id, server, worker)."""
    path = await register(client, f"""\
        workflow:
          - step: long
            tool: {{kind: python, code: "{code}"}}
        """)
    server = spawn("server", "start", "--port", "0", "--no-indexer", "--no-agent")
    worker = spawn("worker", "start", "--concurrency", "2")
    assert client.executions is not None
    execution_id = await client.executions.start(path)
    await step_started(client, execution_id)
    return execution_id, server, worker
