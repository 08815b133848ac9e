"""The shell tool (spec section 3): `cmds` run in order with /bin/sh, stopping at the first failure.

Each command runs in its own process group with `env` over the worker's environment (a null value
unsets a variable) in `cwd` (default: the execution's work directory, else the worker's). The result is
`{stdout, stderr, returncode, duration_ms}` over all commands run (each stream keeps its last
`output_limit_bytes`). A non-zero exit is an error envelope carrying the same fields, of kind `internal`
with `code` = the exit code and `type` = "NonZeroExit": the vocabulary has no shell-specific kind;
`python_exception` would mislead diagnosis about the language, and the exit code plus stderr say the
rest. The time limit kills the whole process group → `timeout`. Processes a command left running in the
background are killed when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.support import Attempt, TailBuffer, ToolFailure, guarded

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_LIMIT = 1024 * 1024
SHELL = "/bin/sh"


class ShellTool:
    kind = "shell"

    def __init__(self, output_limit_bytes: int = DEFAULT_OUTPUT_LIMIT) -> None:
        self.output_limit_bytes = output_limit_bytes

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        config = attempt.config
        cmds = _commands(config.get("cmds"))
        env = _environment(config.get("env"))
        cwd = config.get("cwd") or (str(attempt.call.work_dir) if attempt.call.work_dir else None)
        if cwd is not None and not os.path.isdir(str(cwd)):
            raise ToolFailure("validation", f"cwd '{cwd}' is not a directory")
        out, err = TailBuffer(self.output_limit_bytes), TailBuffer(self.output_limit_bytes)
        limit = attempt.timeout
        deadline = time.monotonic() + limit if limit else None
        returncode = 0
        failed_at = 0
        for index, command in enumerate(cmds, start=1):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                returncode = await _run_one(command, env, cwd, out, err, remaining)
            except TimeoutError:
                partial = {"stdout": out.text(), "stderr": err.text(), "returncode": None,
                           "duration_ms": attempt.elapsed_ms()}
                raise ToolFailure("timeout", f"command {index} of {len(cmds)} did not finish within "
                                             f"{limit} s; its process group was killed",
                                  data=partial, meta={"commands_run": index}) from None
            if returncode != 0:
                failed_at = index
                break
        result: dict[str, Any] = {"stdout": out.text(), "stderr": err.text(), "returncode": returncode,
                  "duration_ms": attempt.elapsed_ms()}
        meta: dict[str, Any] = {"commands_run": failed_at or len(cmds)}
        if out.truncated or err.truncated:
            meta["output_truncated"] = True
        if not failed_at:
            return ResultEnvelope.ok(result, **meta)
        how = (f"was killed by {signal.Signals(-returncode).name}" if returncode < 0
               else f"exited with code {returncode}")
        tail = result["stderr"].strip()[-500:] or result["stdout"].strip()[-500:]
        message = f"command {failed_at} of {len(cmds)} {how}" + (f": {tail}" if tail else "")
        return ResultEnvelope.fail("internal", message, retryable=False, code=returncode,
                                   type="NonZeroExit", data=result, **meta)


async def _run_one(command: str, env: dict[str, str], cwd: str | None, out: TailBuffer, err: TailBuffer,
                   remaining: float | None) -> int:
    process = await asyncio.create_subprocess_exec(
        SHELL, "-c", command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
    try:
        async with asyncio.timeout(remaining):
            assert process.stdout is not None and process.stderr is not None
            await asyncio.gather(_pump(process.stdout, out), _pump(process.stderr, err), process.wait())
    except (TimeoutError, asyncio.CancelledError):
        _kill_group(process)
        await process.wait()
        raise
    finally:
        _kill_group(process)  # whatever the command left behind in its group
    return process.returncode if process.returncode is not None else -1


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _pump(stream: asyncio.StreamReader, sink: TailBuffer) -> None:
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        sink.write(chunk)


def _commands(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list) and value and all(isinstance(c, str) for c in value):
        return [c for c in value if c.strip()] or _commands(None)
    raise ToolFailure("validation", "the shell tool needs 'cmds': a command string or a list of them")


def _environment(extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    if extra is None:
        return env
    if not isinstance(extra, Mapping):
        raise ToolFailure("validation", "env must be a mapping of variable names to values")
    for key, value in extra.items():
        if value is None:
            env.pop(str(key), None)
        elif isinstance(value, bool):
            env[str(key)] = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            env[str(key)] = json.dumps(value)
        else:
            env[str(key)] = str(value)
    return env
