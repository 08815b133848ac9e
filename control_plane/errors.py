"""The control plane's error types: one base, each carrying what went wrong, where, and how to fix it."""

from __future__ import annotations

from typing import Any


class ControlPlaneError(Exception):
    """Base of every error the control plane raises on purpose.

    `code` is a stable machine-readable name; `where` says the place (a table, a credential, a file);
    `fix` says what to do about it. The message already contains all three. Messages never contain
    credential values.
    """

    code: str = "control_plane_error"

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


class DatabaseUnavailableError(ControlPlaneError):
    """Postgres could not be reached or refused the connection."""

    code = "database_unavailable"


class MigrationError(ControlPlaneError):
    """A schema migration could not be applied, or an applied one was changed afterwards."""

    code = "migration_failed"


class NotFoundError(ControlPlaneError, LookupError):
    """The requested row (execution, playbook version, credential) is not stored."""

    code = "not_found"


class ConflictError(ControlPlaneError):
    """The row already exists or contradicts what is stored."""

    code = "conflict"


class InvalidArgumentError(ControlPlaneError, ValueError):
    """An argument has a value the store cannot accept (a bad cursor, a credential missing keys)."""

    code = "invalid_argument"


class SecretKeyError(ControlPlaneError):
    """The credential encryption key is missing, malformed, unsafe, or not the one the data needs."""

    code = "secret_key"
