"""Every document of the corpus gets exactly the located problems written at its end."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.net.validate import validate_text
from tests.conftest import CORPUS

VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))


def _expected(text: str) -> set[tuple[str, int, int, str, str]]:
    out = set()
    for line in text.splitlines():
        for marker, severity in (("# expect: ", "error"), ("# expect-warning: ", "warning")):
            if line.startswith(marker):
                position, code, path = line[len(marker):].split(" ", 2)
                row, col = position.split(":")
                out.add((severity, int(row), int(col), code, path))
    return out


def _found(path: Path) -> set[tuple[str, int, int, str, str]]:
    result = validate_text(path.read_text(encoding="utf-8"), str(path))
    return {(d.severity, d.line, d.column, d.code, d.path) for d in result.diagnostics}


def test_the_corpus_covers_every_section_of_the_spec() -> None:
    sections = {p.name.split("_")[0] for p in VALID + INVALID}
    for section in ("s01", "s02", "s03", "s04", "s05", "s06", "s07", "s08", "s10", "s11", "s12", "s13",
                    "s14", "s16"):
        assert section in sections, f"no corpus document for spec section {section}"
    assert len(INVALID) >= 60


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_an_invalid_document_gets_exactly_its_expected_located_errors(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    expected = _expected(text)
    assert any(e[0] == "error" for e in expected), f"{path.name} lists no expected error"
    assert _found(path) == expected
    assert not validate_text(text, str(path)).valid()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_a_valid_document_validates_with_only_its_expected_warnings(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    result = validate_text(text, str(path))
    assert result.valid(), [d.format() for d in result.diagnostics]
    assert _found(path) == _expected(text)
    assert result.net is not None
    assert result.valid(strict=True) == (not _expected(text))
