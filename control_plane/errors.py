"""The control plane's error types: one base, each carrying what went wrong, where, and how to fix it."""

from __future__ import annotations

from typing import Any

from engine.errors import NoetlError


class ControlPlaneError(NoetlError):
    """Base of every error the control plane raises on purpose (what, where and the fix, as
    engine.errors.NoetlError). Messages never contain credential values."""

    code = "control_plane_error"


class DatabaseUnavailableError(ControlPlaneError):
    """Postgres could not be reached or refused the connection. `transient`: it did not answer (down,
    restarting, a connection lost) and the same call may succeed later; else it answered and refused (a
    wrong password, no such database) and repeating cannot help. `details["reason"]` is the driver's
    reason in a few words ("Connection refused")."""

    code = "database_unavailable"

    def __init__(self, message: str, *, transient: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient


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


class UnauthorizedError(ControlPlaneError):
    """No token, or one that is not (or no longer) valid."""

    code = "unauthorized"


class ForbiddenError(ControlPlaneError):
    """A valid token whose role may not do this."""

    code = "forbidden"
