"""The CLI reports an unreachable server or a bad payload as one clear line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES


def noetl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "noetl.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_an_unreachable_nats_server_is_one_line_naming_it_and_exit_three(tmp_path: Path,
                                                                         pg_dsn: str) -> None:
    env = {**os.environ, "NOETL_HOME": str(tmp_path), "NOETL_NATS_URL": "nats://127.0.0.1:1",
           "NOETL_PG_DSN": pg_dsn}
    result = noetl("run", str(EXAMPLES / "01_hello.yaml"), env=env)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "nats://127.0.0.1:1" in line and "NOETL_NATS_URL" in line


def test_an_unreachable_database_is_one_line_naming_it_without_its_password(tmp_path: Path,
                                                                            nats_url: str) -> None:
    env = {**os.environ, "NOETL_HOME": str(tmp_path), "NOETL_NATS_URL": nats_url,
           "NOETL_PG_DSN": "postgresql://app:hunter2-secret@127.0.0.1:1/noetl?connect_timeout=2"}
    result = noetl("run", str(EXAMPLES / "01_hello.yaml"), env=env)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr and "hunter2-secret" not in result.stderr
    assert "NOETL_PG_DSN" in result.stderr and "port=1" in result.stderr


def test_a_payload_that_is_not_an_object_is_refused_before_anything_runs(tmp_path: Path) -> None:
    env = {**os.environ, "NOETL_HOME": str(tmp_path)}
    result = noetl("run", str(EXAMPLES / "01_hello.yaml"), "--payload", "[1, 2]", env=env)
    assert result.returncode == 2
    assert "--payload must be a JSON object" in result.stderr
    assert not (tmp_path / "postgres").exists()  # nothing was started
