"""The worker side of the python tool: a small pool of long-lived `python_runner` child processes.

Each request goes to an idle child over its stdin/stdout (length-prefixed JSON, see python_runner).
A child that times out, is cancelled, crashes, exits (`os._exit`), runs out of memory or has served
`max_runs_per_process` requests is killed with its whole process group and replaced in the background,
so the pool always comes back to its warm children and the worker never goes down.

At most `size` children run at once (the worker sizes it from its concurrency, so every step it runs at
once has an interpreter); `start` warms `warm` of them (default: all) and the others start on first
demand, then stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.tools.python_runner import HEADER
from engine.tools.support import TailBuffer

log = logging.getLogger(__name__)

GIB = 1024 ** 3
DEFAULT_MEMORY_LIMIT = 4 * GIB
DEFAULT_OUTPUT_LIMIT = 64 * 1024
_STDERR_TAIL = 8 * 1024


class PoolClosedError(RuntimeError):
    """The pool was closed; no more code can run in it."""


@dataclass
class _Child:
    process: asyncio.subprocess.Process
    stderr: TailBuffer = field(default_factory=lambda: TailBuffer(_STDERR_TAIL))
    drain: asyncio.Task[None] | None = None
    runs: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


class PythonPool:
    """Up to `size` interpreters for the python tool (`warm` of them started by `start`); `run` sends one
    request and awaits its reply."""

    def __init__(self, size: int = 2, *, memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT,
                 output_limit_chars: int = DEFAULT_OUTPUT_LIMIT, max_runs_per_process: int = 500,
                 python: str = sys.executable, start_timeout_s: float = 60.0,
                 warm: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"a python pool needs at least one process, got size={size}")
        self.size = size
        self.warm = size if warm is None else max(1, min(warm, size))
        self.memory_limit_bytes = memory_limit_bytes or 0
        self.output_limit_chars = output_limit_chars
        self.max_runs_per_process = max_runs_per_process
        self.python = python
        self.start_timeout_s = start_timeout_s
        self._slots = asyncio.Semaphore(size)
        self._idle: deque[asyncio.Future[_Child]] = deque()
        self._closed = False
        self._spawned = 0

    # -------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start `warm` children (and wait until each said it is ready)."""
        self._closed = False
        while len(self._idle) < self.warm:
            self._idle.append(asyncio.ensure_future(self._spawn()))
        for pending in list(self._idle):
            await asyncio.shield(pending)

    async def close(self) -> None:
        """Kill every child; pending and later `run` calls fail with PoolClosedError."""
        self._closed = True
        while self._idle:
            pending = self._idle.popleft()
            try:
                child = await pending
            except Exception:
                continue
            await self._kill(child)

    async def __aenter__(self) -> PythonPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def spawned(self) -> int:
        """How many child processes this pool has started so far (replacements included)."""
        return self._spawned

    async def idle_pids(self) -> list[int]:
        """The process ids of the idle children (waits for replacements still starting)."""
        pids = []
        for pending in list(self._idle):
            with contextlib.suppress(Exception):
                pids.append((await asyncio.shield(pending)).pid)
        return pids

    # -------------------------------------------------------------------------------- running

    async def run(self, request: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """The child's reply to `request`, or a failure reply (`kind` timeout / crash) made here."""
        if self._closed:
            raise PoolClosedError("the python pool is closed")
        async with self._slots:
            child = await self._acquire()
            healthy = False
            try:
                reply = await self._exchange(child, request, timeout_s)
                healthy = child.alive and not reply.get("recycle") and not reply.get("lost")
            finally:
                self._release(child, healthy)
            return reply

    async def _exchange(self, child: _Child, request: Mapping[str, Any],
                        timeout_s: float | None) -> dict[str, Any]:
        body = json.dumps(request, ensure_ascii=False, default=str).encode("utf-8")
        child.runs += 1
        try:
            async with asyncio.timeout(timeout_s):
                assert child.process.stdin is not None and child.process.stdout is not None
                child.process.stdin.write(HEADER.pack(len(body)) + body)
                await child.process.stdin.drain()
                header = await child.process.stdout.readexactly(HEADER.size)
                payload = await child.process.stdout.readexactly(HEADER.unpack(header)[0])
            return json.loads(payload)
        except TimeoutError:
            await self._kill(child)
            return {"status": "error", "kind": "timeout", "retryable": True, "type": "TimeoutError",
                    "message": f"the python code did not finish within {timeout_s} s; its process "
                               "was killed", "lost": True}
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            return await self._crashed(child)

    async def _crashed(self, child: _Child) -> dict[str, Any]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await child.process.wait()
        await self._kill(child)
        if child.drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(1):
                    await asyncio.shield(child.drain)
        code = child.process.returncode
        tail = child.stderr.text().strip()
        detail = f"; its last output: {tail[-2000:]}" if tail else ""
        if code is not None and code < 0:
            name = _signal_name(-code)
            if -code == signal.SIGKILL or "MemoryError" in tail:
                return {"status": "error", "kind": "resource_exhausted", "retryable": False,
                        "type": "ProcessKilled", "lost": True,
                        "message": f"the python process was killed by {name} (most likely out of "
                                   f"memory){detail}"}
            return {"status": "error", "kind": "python_exception", "retryable": False, "lost": True,
                    "type": "ProcessCrashed", "message": f"the python process crashed with {name}{detail}"}
        if "MemoryError" in tail:
            return {"status": "error", "kind": "resource_exhausted", "retryable": False, "lost": True,
                    "type": "MemoryError", "message": f"the python process ran out of memory{detail}"}
        return {"status": "error", "kind": "python_exception", "retryable": False, "lost": True,
                "type": "ProcessExit", "message": f"the python process exited with code {code} before "
                                                  f"returning a result (os._exit or a crash){detail}"}

    # -------------------------------------------------------------------------------- children

    async def _acquire(self) -> _Child:
        while True:
            fresh = not self._idle
            pending = asyncio.ensure_future(self._spawn()) if fresh else self._idle.popleft()
            try:
                child = await asyncio.shield(pending)  # a cancelled caller must not kill a spawn midway
            except asyncio.CancelledError:
                self._idle.appendleft(pending)  # the next caller gets this child
                raise
            except Exception as exc:
                if fresh:
                    raise
                log.warning("a python child failed to start: %s", exc)  # start one now instead
                continue
            if child.alive:
                return child
            await self._kill(child)

    def _release(self, child: _Child, healthy: bool) -> None:
        if self._closed:
            asyncio.ensure_future(self._kill(child))
            return
        if healthy and child.runs < self.max_runs_per_process:
            self._idle.append(_done(child))
            return
        replacement = asyncio.ensure_future(self._replace(child))
        self._idle.append(replacement)

    async def _replace(self, old: _Child) -> _Child:
        await self._kill(old)
        return await self._spawn()

    async def _spawn(self) -> _Child:
        if self._closed:
            raise PoolClosedError("the python pool is closed")
        process = await asyncio.create_subprocess_exec(
            self.python, "-m", "engine.tools.python_runner",
            "--memory-limit", str(self.memory_limit_bytes),
            "--output-limit", str(self.output_limit_chars),
            "--parent-pid", str(os.getpid()),  # it exits by itself if this process dies
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            limit=2 ** 20,
        )
        self._spawned += 1
        child = _Child(process)
        child.drain = asyncio.ensure_future(_drain(process, child.stderr))
        try:
            async with asyncio.timeout(self.start_timeout_s):
                assert process.stdout is not None
                header = await process.stdout.readexactly(HEADER.size)
                await process.stdout.readexactly(HEADER.unpack(header)[0])
        except (TimeoutError, asyncio.IncompleteReadError) as exc:
            await self._kill(child)
            raise RuntimeError(f"the python runner did not start: {child.stderr.text()[-2000:]}") from exc
        log.debug("python runner %s ready", process.pid)
        return child

    async def _kill(self, child: _Child) -> None:
        if child.alive:  # not yet reaped, so the group id is still this child's own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        await child.process.wait()
        if child.process.stdin is not None:
            child.process.stdin.close()
        if child.drain is not None and not child.drain.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(1):
                    await asyncio.shield(child.drain)
            child.drain.cancel()


def _done(child: _Child) -> asyncio.Future[_Child]:
    """An idle child as an already-resolved future (no task to schedule on the hot path)."""
    ready: asyncio.Future[_Child] = asyncio.get_running_loop().create_future()
    ready.set_result(child)
    return ready


async def _drain(process: asyncio.subprocess.Process, tail: TailBuffer) -> None:
    assert process.stderr is not None
    while True:
        chunk = await process.stderr.read(65536)
        if not chunk:
            return
        tail.write(chunk)
        log.debug("python runner %s stderr: %s", process.pid, chunk[:500].decode("utf-8", "replace"))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
