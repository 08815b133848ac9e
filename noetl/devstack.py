"""The `noetl dev up` stack of a home: where its serving process writes its state, and whether it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from noetl.settings import noetl_home


def dev_state_file(home: Path | None = None) -> Path:
    return (home or noetl_home()) / "dev.json"


def components_file(home: Path | None = None) -> Path:
    return (home or noetl_home()) / "dev-components.json"


def running_dev_stack(home: Path | None = None) -> dict[str, Any] | None:
    """The dev stack's state when its serving process is alive, else None."""
    from engine.runtime.embedded import pid_alive
    path = dev_state_file(home)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("ready") and pid_alive(int(state.get("pid", 0))) else None
