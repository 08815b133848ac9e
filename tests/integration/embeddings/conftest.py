"""Embeddings on a real runtime: the runtime fixtures (a Stack on the session's NATS and a fresh Postgres
database per test), the real all-MiniLM-L6-v2 model loaded once per session, Qdrant Edge under tmp_path."""

from __future__ import annotations

import pytest

from agents.embeddings.embedder import MiniLMEmbedder
from tests.harness.runtime import runtime_env  # noqa: F401 - a fixture
from tests.integration.runtime.conftest import stack  # noqa: F401 - a fixture


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    """The model takes seconds to import and load: once per test session."""
    return MiniLMEmbedder().load()
