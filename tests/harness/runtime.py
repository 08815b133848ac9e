"""Pytest fixtures of a NoETL runtime per test: the asyncio backend, the environment and the StackConfig."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from control_plane.stack import StackConfig


@pytest.fixture
def runtime_env(nats_url: str, nats_prefix: str, pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    """The environment a NoETL process of this test's runtime needs."""
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "NOETL_NATS_URL": nats_url, "NOETL_PG_DSN": pg_dsn, "NOETL_BUS_PREFIX": nats_prefix,
            "NOETL_HOME": str(home), "NOETL_ACK_WAIT_S": "2"}


def stack_config_of(env: dict[str, str], **overrides: object) -> StackConfig:
    """The StackConfig of the runtime `env` describes (see `runtime_env`), with `overrides`."""
    values: dict[str, object] = {"home": Path(env["NOETL_HOME"]), "nats_url": env["NOETL_NATS_URL"],
                                 "pg_dsn": env["NOETL_PG_DSN"], "prefix": env["NOETL_BUS_PREFIX"],
                                 "ack_wait_s": 2.0}
    values.update(overrides)
    return StackConfig(**values)  # type: ignore[arg-type]
