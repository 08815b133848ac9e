"""The shared example playbooks validate, and the repository's copies are the shared ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.net.validate import validate_file
from tests.conftest import EXAMPLES, REPO

SHARED = REPO.parent / "shared" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_the_repository_ships_every_shared_example() -> None:
    assert len(EXAMPLE_FILES) >= 17
    if not SHARED.is_dir():  # a clone without shared/ beside it still runs the copies
        return
    for shared in sorted(SHARED.glob("*.yaml")):
        copy = EXAMPLES / shared.name
        assert copy.is_file(), f"examples/{shared.name} is missing: copy it from shared/examples"
        assert copy.read_text() == shared.read_text(), f"examples/{shared.name} differs from shared/"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_playbook_is_valid_without_warnings(path: Path) -> None:
    result = validate_file(path)
    assert result.valid(strict=True), [d.format() for d in result.diagnostics]
