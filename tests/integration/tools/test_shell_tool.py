"""The shell tool runs commands in order with /bin/sh, stops at the first failure, and kills on timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.results import ResultEnvelope
from engine.tools.shell_tool import ShellTool
from tests.harness.polling import poll

from .conftest import make_call

pytestmark = pytest.mark.anyio


async def shell(config: dict[str, Any], **fields: Any) -> ResultEnvelope:
    return await ShellTool(output_limit_bytes=fields.pop("limit", 1024 * 1024)).run(
        make_call("shell", config, **fields))


async def test_commands_run_in_order_with_env_and_cwd(tmp_path: Path) -> None:
    env = await shell({"cmds": ["echo first", "echo \"$GREETING from $(pwd)\"", "echo err >&2"],
                       "env": {"GREETING": "hello"}, "cwd": str(tmp_path)})
    assert env.status == "ok"
    assert env.data["stdout"] == f"first\nhello from {tmp_path}\n"
    assert env.data["stderr"] == "err\n" and env.data["returncode"] == 0 and env.data["duration_ms"] > 0


async def test_a_single_string_is_one_script() -> None:
    env = await shell({"cmds": "x=2\necho $((x * 21))"})
    assert env.data["stdout"] == "42\n"


async def test_the_first_failure_stops_the_rest_and_is_an_error(tmp_path: Path) -> None:
    marker = tmp_path / "never"
    env = await shell({"cmds": ["echo before", "echo broken >&2; exit 3", f"touch {marker}"]})
    assert env.status == "error" and env.error is not None
    assert env.error.kind == "internal" and env.error.code == 3 and env.error.type == "NonZeroExit"
    assert "command 2 of 3 exited with code 3" in env.error.message and "broken" in env.error.message
    assert env.data == {"stdout": "before\n", "stderr": "broken\n", "returncode": 3,
                        "duration_ms": env.data["duration_ms"]}
    assert not marker.exists()


async def test_a_missing_program_is_exit_code_127() -> None:
    env = await shell({"cmds": "definitely-not-a-program-xyz"})
    assert env.error is not None and env.error.code == 127


async def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = time.perf_counter()
    env = await shell({"cmds": f"sleep 60 & echo $! > {pidfile}; echo started; wait"}, timeout_s=0.5)
    assert time.perf_counter() - started < 5
    assert env.error is not None and env.error.kind == "timeout" and env.error.retryable is True
    assert env.data["stdout"] == "started\n"
    child = int(pidfile.read_text())

    def gone() -> bool:  # the killed background child disappears (it may linger briefly as a zombie of init)
        try:
            os.kill(child, 0)
            with open(f"/proc/{child}/stat") as stat:
                return stat.read().split(") ")[1].startswith("Z")
        except (ProcessLookupError, FileNotFoundError):
            return True

    await poll(gone, timeout_s=5, what="the background child to die with the timed-out shell")


async def test_the_config_timeout_applies_too() -> None:
    env = await shell({"cmds": "sleep 30", "timeout": "200ms"})
    assert env.error is not None and env.error.kind == "timeout"


async def test_output_is_bounded_to_its_tail() -> None:
    env = await shell({"cmds": "seq 1 100000"}, limit=1000)
    assert len(env.data["stdout"]) == 1000 and env.data["stdout"].endswith("99999\n100000\n")
    assert (env.meta.model_extra or {})["output_truncated"] is True


async def test_a_null_env_value_unsets_the_variable() -> None:
    os.environ["NOETL_SHELL_TEST_VAR"] = "set"
    try:
        env = await shell({"cmds": "echo \"[${NOETL_SHELL_TEST_VAR:-unset}]\"",
                           "env": {"NOETL_SHELL_TEST_VAR": None}})
    finally:
        del os.environ["NOETL_SHELL_TEST_VAR"]
    assert env.data["stdout"] == "[unset]\n"


async def test_bad_configuration_is_a_validation_error(tmp_path: Path) -> None:
    empty = await shell({"cmds": []})
    assert empty.error is not None and empty.error.kind == "validation"
    bad_cwd = await shell({"cmds": "true", "cwd": str(tmp_path / "missing")})
    assert bad_cwd.error is not None and bad_cwd.error.kind == "validation"
