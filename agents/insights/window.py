"""The time window of an insights report: `--since 7d`, `24h`, `90m` or an ISO 8601 time. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from agents.insights.errors import InsightsError

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DEFAULT_SINCE = "7d"


def since_time(since: str | None, now: datetime) -> datetime:
    """The start of the window `since` names, counted back from `now`."""
    text = (since or DEFAULT_SINCE).strip()
    span = _SPAN.match(text)
    if span:
        return now - timedelta(seconds=float(span.group(1)) * _UNITS[span.group(2)])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InsightsError(f"--since '{since}' is neither a span nor a time", where="since",
                            fix="use a span such as 7d, 24h, 90m, or an ISO 8601 time such as "
                                "2026-12-01T00:00:00+00:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
