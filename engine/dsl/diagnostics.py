"""Located problems found in a playbook: what every stage of validation reports, and how paths print."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Path = tuple[str | int, ...]
Severity = Literal["error", "warning"]


def format_path(path: Sequence[str | int]) -> str:
    """`('workflow', 3, 'next', 'arcs', 0, 'step')` -> `workflow[3].next.arcs[0].step`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A `; did you mean 'x'?` suffix when a close choice exists, else ''."""
    options = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def quote_list(items: Iterable[str]) -> str:
    return ", ".join(f"'{i}'" for i in items)


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem found on the normalized document, before it is placed in the source file."""

    path: Path
    message: str
    code: str
    severity: Severity = "error"
    on_key: bool = False  # point at the key of `path` rather than at its value


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem placed in its source file: `FILE:LINE:COL PATH: MESSAGE`."""

    file: str
    line: int
    column: int
    path: str
    message: str
    code: str
    severity: Severity = "error"

    def format(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.column} {self.path}: {prefix}{self.message}"

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "code": self.code,
            "severity": self.severity,
        }
