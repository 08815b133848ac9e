"""The insights' error: what, where and how to fix it."""

from __future__ import annotations

from engine.errors import NoetlError


class InsightsError(NoetlError):
    code = "insights_error"
