"""Validation as `noetl validate` and registration see it: read, check statically, compile the net."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from engine.dsl.diagnostics import Diagnostic
from engine.dsl.load import LoadedPlaybook, load_playbook_text, read_playbook_file
from engine.dsl.model import TOOL_KINDS, Playbook
from engine.net.checks import check_document
from engine.net.compile import compile_net
from engine.net.net import Net

# tool kinds whose client library is an optional extra: kind -> importable module
OPTIONAL_TOOL_MODULES = {"snowflake": "snowflake.connector"}


def available_tool_kinds() -> tuple[str, ...]:
    """The tool kinds this installation can run."""
    out = []
    for kind in TOOL_KINDS:
        module = OPTIONAL_TOOL_MODULES.get(kind)
        if module is not None:
            try:
                if importlib.util.find_spec(module) is None:
                    continue
            except ModuleNotFoundError:
                continue
        out.append(kind)
    return tuple(out)


@dataclass
class Validation:
    file: str
    loaded: LoadedPlaybook
    net: Net | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def playbook(self) -> Playbook | None:
        return self.loaded.playbook if not self.errors else None

    def valid(self, *, strict: bool = False) -> bool:
        return not self.errors and not (strict and self.warnings)


def validate_text(text: str, file: str = "<playbook>") -> Validation:
    """Every problem of a playbook text at once, sorted by position; the net when it is valid."""
    loaded = load_playbook_text(text, file)
    if loaded.canonical is not None:
        loaded.add(check_document(loaded.canonical, available_kinds=available_tool_kinds()))
    diagnostics = sorted(loaded.diagnostics, key=lambda d: (d.line, d.column, d.severity, d.message))
    result = Validation(file, loaded, diagnostics=diagnostics)
    if loaded.playbook is not None and not result.errors:
        result.net = compile_net(loaded.playbook)
    return result


def validate_file(path: str | Path) -> Validation:
    """Like validate_text for a file; raises PlaybookSourceError when the file cannot be read."""
    return validate_text(read_playbook_file(path), str(path))
