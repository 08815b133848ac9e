"""The `noetl dev up` stack of a home: where its serving process writes its state, and whether it runs."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from engine.runtime.processes import pid_alive
from noetl.settings import noetl_home


def dev_state_file(home: Path | None = None) -> Path:
    return (home or noetl_home()) / "dev.json"


def components_file(home: Path | None = None) -> Path:
    return (home or noetl_home()) / "dev-components.json"


def cli_token_file(home: Path | None = None) -> Path:
    """The operator token the serving process made for this home's command line (noetl.fastrun)."""
    return (home or noetl_home()) / "dev-cli-token"


def write_cli_token(path: Path, token: str) -> None:
    """Readable by this user only, like the home's secret.key: whoever reads it may run playbooks."""
    scratch = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):  # an older scratch file keeps its own mode
        scratch.unlink()
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    scratch.replace(path)


def running_dev_stack(home: Path | None = None) -> dict[str, Any] | None:
    """The dev stack's state when its serving process is alive, else None."""
    path = dev_state_file(home)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("ready") and pid_alive(int(state.get("pid", 0))) else None
