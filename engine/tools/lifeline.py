"""Exit with the parent: a daemon thread notices that the process which started this one has died."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

POLL_S = 0.25  # how often the parent is checked: an orphan notices within this


def watch_parent(parent_pid: int, on_orphaned: Callable[[], None], *,
                 poll_s: float = POLL_S) -> threading.Thread:
    """Call `on_orphaned()` once, on a daemon thread, when this process's parent is no longer
    `parent_pid` (the parent died and the kernel re-parented this process to init or a subreaper).

    Polling os.getppid() notices any death of the parent (kill -9 included), unlike PR_SET_PDEATHSIG,
    which fires when the *thread* that forked this process ends. Pass the pid the parent reported
    (not os.getppid() read here) so that a parent already dead before this call is noticed too."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        on_orphaned()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
