"""Shared test fixtures: where the repository's playbooks live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CORPUS = REPO / "tests" / "corpus" / "dsl"


@pytest.fixture
def repo() -> Path:
    return REPO
