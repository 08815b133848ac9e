"""Reading a playbook end to end: text -> YAML with marks -> canonical data -> model, problems located."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from engine.dsl.diagnostics import Diagnostic, Issue, format_path
from engine.dsl.model import Playbook
from engine.dsl.normalize import Normalized, PathMap, normalize
from engine.dsl.source import SourceDoc, YamlSyntaxError, load_yaml
from engine.dsl.validate import validate_model
from engine.errors import PlaybookSourceError


@dataclass
class LoadedPlaybook:
    """One playbook read from text: the model when valid, and every problem found on the way."""

    file: str
    source: SourceDoc | None
    canonical: Any
    paths: PathMap
    playbook: Playbook | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.playbook is not None and not any(d.severity == "error" for d in self.diagnostics)

    def locate(self, issue: Issue, *, canonical: bool = True) -> Diagnostic:
        """Place an issue found on the canonical document (or, with canonical=False, the source)."""
        original = self.paths.original(issue.path) if canonical else issue.path
        line, column = self.source.mark_of(original, on_key=issue.on_key) if self.source else (1, 1)
        return Diagnostic(self.file, line, column, format_path(original), issue.message, issue.code,
                          issue.severity)

    def add(self, issues: list[Issue], *, canonical: bool = True) -> None:
        self.diagnostics.extend(self.locate(i, canonical=canonical) for i in issues)


def load_playbook_text(text: str, file: str = "<playbook>") -> LoadedPlaybook:
    """Parse, normalize and validate; never raises on user data."""
    try:
        source = load_yaml(text)
    except YamlSyntaxError as exc:
        diag = Diagnostic(file, exc.line, exc.column, "(document)", exc.message, "yaml_syntax")
        return LoadedPlaybook(file, None, None, PathMap(), None, [diag])
    normalized: Normalized = normalize(source.data)
    loaded = LoadedPlaybook(file, source, normalized.data, normalized.paths, None)
    loaded.add(source.issues, canonical=False)
    loaded.add(normalized.issues, canonical=False)
    playbook, issues = validate_model(normalized.data)
    loaded.add(issues)
    if not any(d.severity == "error" for d in loaded.diagnostics):
        loaded.playbook = playbook
    return loaded


def read_playbook_file(path: str | FilePath) -> str:
    """The text of a playbook file, or PlaybookSourceError saying why it cannot be read."""
    file = FilePath(path)
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlaybookSourceError(f"no such file '{path}'", where=str(path),
                                  fix="check the path") from None
    except IsADirectoryError:
        raise PlaybookSourceError(f"'{path}' is a directory, not a playbook file", where=str(path),
                                  fix="name a .yaml file") from None
    except UnicodeDecodeError as exc:
        raise PlaybookSourceError(f"'{path}' is not UTF-8 text (byte {exc.start})", where=str(path),
                                  fix="save the file as UTF-8") from None
    except OSError as exc:
        raise PlaybookSourceError(f"cannot read '{path}': {exc.strerror}", where=str(path)) from None
