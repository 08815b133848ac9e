"""Settings, read only here at the entry points (DESIGN principle 10): the environment -> a StackConfig."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from control_plane.stack import StackConfig


def noetl_home() -> Path:
    """NOETL_HOME, else the user data dir (~/.local/share/noetl on Linux)."""
    value = os.environ.get("NOETL_HOME")
    return Path(value).expanduser() if value else Path(platformdirs.user_data_dir("noetl"))


def stack_config(**overrides: object) -> StackConfig:
    config: dict[str, object] = {
        "home": noetl_home(),
        "nats_url": os.environ.get("NOETL_NATS_URL") or None,
        "pg_dsn": os.environ.get("NOETL_PG_DSN") or None,
        "secret_key": os.environ.get("NOETL_SECRET_KEY") or None,
        "prefix": os.environ.get("NOETL_BUS_PREFIX") or "noetl",
    }
    if os.environ.get("NOETL_ACK_WAIT_S"):  # how long a silent worker keeps a command (default 30 s)
        config["ack_wait_s"] = float(os.environ["NOETL_ACK_WAIT_S"])
    config.update(overrides)
    return StackConfig(**config)  # type: ignore[arg-type]
