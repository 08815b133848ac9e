"""The triggers' error type: a definition that cannot be used, with the value, where and the fix."""

from __future__ import annotations

from control_plane.errors import InvalidArgumentError


class TriggerSpecError(InvalidArgumentError):
    """A trigger's definition that cannot be used (bad cron, zone, interval)."""
