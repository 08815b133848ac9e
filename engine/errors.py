"""The engine's error types: one base, each carrying what went wrong, where, and how to fix it."""

from __future__ import annotations

from typing import Any


class NoetlError(Exception):
    """What every package's base error shares: a message with the place and the fix in it.

    `code` is a stable machine-readable name; `where` says the place (a file, a step, a table);
    `fix` says what would be valid. The message already contains all three.
    """

    code: str = "noetl_error"

    def __init__(self, message: str, *, code: str | None = None, where: str | None = None,
                 fix: str | None = None, **details: Any) -> None:
        self.message = message
        if code is not None:
            self.code = code
        self.where = where
        self.fix = fix
        self.details = details
        text = message
        if where:
            text = f"{where}: {text}"
        if fix:
            text = f"{text} ({fix})"
        super().__init__(text)


class EngineError(NoetlError):
    """Base of every error the engine raises on purpose."""

    code = "engine_error"


class PlaybookSourceError(EngineError):
    """A playbook file could not be read at all (missing, unreadable, not UTF-8)."""

    code = "unreadable"


class TemplateError(EngineError):
    """A template could not be rendered. `kind` is an error kind of spec section 9."""

    code = "template_error"

    def __init__(self, message: str, *, kind: str, expression: str, where: str | None = None,
                 fix: str | None = None) -> None:
        self.kind = kind
        self.expression = expression
        super().__init__(message, code=kind, where=where, fix=fix)
