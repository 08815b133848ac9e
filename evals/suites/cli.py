"""The command line as the suites drive it: `noetl ARGS` in a subprocess, under the suite's own NOETL_HOME
and with none of the caller's other NOETL_* settings (unless kept)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI_TIMEOUT_S = 120.0


class SuiteCli:
    def __init__(self, home: Path, *, keep: tuple[str, ...] = (), **env: str) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_") or k in keep}
        self.env.update(NOETL_HOME=str(home), PYTHONUNBUFFERED="1", **env)

    def __call__(self, *args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "noetl.cli", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)
