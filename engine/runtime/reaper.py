"""Processes this one starts to outlive it (nats-server, the idle watchdog): waited for on a thread."""

from __future__ import annotations

import subprocess
import threading


def reap_when_done(process: subprocess.Popen[bytes], name: str) -> None:
    """Wait for `process` on a daemon thread: should it exit while this process still runs it leaves no
    zombie, and its Popen is never dropped while it runs (which Python reports as a ResourceWarning)."""
    threading.Thread(target=process.wait, name=f"noetl-reaper-{name}", daemon=True).start()
