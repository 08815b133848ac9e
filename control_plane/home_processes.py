"""The processes started for one NOETL_HOME, found by command line and environment (Linux /proc)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from engine.runtime.embedded import pid_alive

_PROC = Path("/proc")
_POLL_S = 0.05


def _argv(pid: int) -> list[str]:
    return (_PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")


def _home_of(pid: int) -> Path | None:
    """The NOETL_HOME in the environment the process was started with (None when unset or unreadable)."""
    with contextlib.suppress(OSError):
        for entry in (_PROC / str(pid) / "environ").read_bytes().split(b"\0"):
            if entry.startswith(b"NOETL_HOME="):
                return Path(os.fsdecode(entry[len(b"NOETL_HOME="):])).expanduser().resolve()
    return None


def _parent(pid: int) -> int:
    return int((_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def find(home: Path, module: str, *, orphaned: bool = False) -> list[int]:
    """The live processes running `python -m module` with NOETL_HOME=home (none where there is no /proc);
    with `orphaned`, only those whose parent is not a process of that home (their starter died)."""
    home = Path(home).expanduser().resolve()
    found = []
    with contextlib.suppress(OSError):
        for entry in _PROC.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            pid = int(entry.name)
            with contextlib.suppress(OSError, ValueError, IndexError):  # it exited meanwhile
                if module in _argv(pid) and _home_of(pid) == home and pid_alive(pid):
                    if not (orphaned and _home_of(_parent(pid)) == home):
                        found.append(pid)
    return sorted(found)


def stop(pids: list[int], timeout_s: float = 20.0, *, groups: bool = False) -> list[int]:
    """SIGTERM each process, SIGKILL those still alive after `timeout_s`; returns the pids signalled.
    With `groups`, a process that leads its process group is SIGKILLed with its group at once."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if groups and os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGTERM)
                os.kill(pid, signal.SIGCONT)  # a stopped process handles SIGTERM only once continued
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids
