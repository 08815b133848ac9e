"""Shared test fixtures: where the repository's playbooks live."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# session-scoped real servers (nats-server, PostgreSQL), each started once and only when a test asks
pytest_plugins = [m for m in ("tests.harness.postgres", "tests.harness.nats")
                  if importlib.util.find_spec(m) is not None]

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CORPUS = REPO / "tests" / "corpus" / "dsl"


@pytest.fixture
def anyio_backend() -> str:
    """asyncio for every anyio test, one event loop per test (a package that serves an API for a whole
    module overrides it with a module-scoped one: tests/harness/control_plane.py)."""
    return "asyncio"


@pytest.fixture
def repo() -> Path:
    return REPO
