"""Interval schedules for triggers (`every:`, docs/triggers.md): durations and firings; pure, clock-free.

An interval schedule fires at anchor + k * every for k >= 1, computed in whole microseconds so that no
drift builds up over many periods. Inputs are timezone-aware datetimes (a naive one raises ValueError);
outputs are UTC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from control_plane.triggers.errors import TriggerSpecError

MIN_INTERVAL_S = 1.0
UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
DURATION_FORMS = "a positive duration such as 30s, 15m, 1h, 2d or 1h30m, or a number of seconds such as 90"

_NUMBER = r"\d+(?:\.\d+)?"
_PARTS = re.compile(rf"^(?:({_NUMBER})d)?\s*(?:({_NUMBER})h)?\s*(?:({_NUMBER})m)?\s*(?:({_NUMBER})s)?$")
_PLAIN = re.compile(rf"^{_NUMBER}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_duration(value: str | int | float, where: str = "every") -> float:
    """Seconds in `value`: "30s", "15m", "1h", "2d", "1h30m" (units in that order, any case), "90" or 90.

    TriggerSpecError, at `where`, for an empty, negative, zero, infinite or unreadable duration.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TriggerSpecError(f"{value!r} is not a duration", where=where, fix=DURATION_FORMS)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        if not text:
            raise TriggerSpecError("the duration is empty", where=where, fix=DURATION_FORMS)
        if _PLAIN.match(text):
            seconds = float(text)
        else:
            parts = _PARTS.match(text)
            if parts is None or not any(parts.groups()):
                problem = "is negative" if text.startswith("-") else "is not a duration"
                raise TriggerSpecError(f"'{value}' {problem}", where=where, fix=DURATION_FORMS)
            seconds = sum(float(number) * unit
                          for number, unit in zip(parts.groups(), UNIT_SECONDS.values(), strict=True)
                          if number is not None)
    if math.isnan(seconds) or math.isinf(seconds):
        raise TriggerSpecError(f"'{value}' is not a finite duration", where=where, fix=DURATION_FORMS)
    if seconds < 0:
        raise TriggerSpecError(f"'{value}' is negative", where=where, fix=DURATION_FORMS)
    if seconds == 0:
        raise TriggerSpecError(f"'{value}' is zero: the schedule would never advance", where=where,
                               fix=DURATION_FORMS)
    return seconds


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Firings every `every_s` seconds (at least 1) after `anchor` (aware): anchor + k * every_s, k >= 1."""

    every_s: float
    anchor: datetime
    _every_us: int = field(init=False, repr=False, compare=False)
    _anchor_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every = self.every_s
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every):
            raise TriggerSpecError(f"{every!r} is not a number of seconds", where="every", fix=DURATION_FORMS)
        if every < MIN_INTERVAL_S:
            raise TriggerSpecError(f"an interval of {every:g}s is shorter than the minimum of 1s",
                                   where="every", fix="1s or more, such as 30s or 15m")
        object.__setattr__(self, "_every_us", round(every * 1_000_000))
        object.__setattr__(self, "_anchor_us", _micros(self.anchor, "anchor"))

    def next_after(self, instant: datetime) -> datetime:
        """The first firing strictly after `instant`, in UTC."""
        periods = max((_micros(instant, "instant") - self._anchor_us) // self._every_us + 1, 1)
        return _from_micros(self._anchor_us + periods * self._every_us)

    def prev_at_or_before(self, instant: datetime) -> datetime | None:
        """The last firing at or before `instant`, in UTC; None before the first (anchor + every_s)."""
        periods = (_micros(instant, "instant") - self._anchor_us) // self._every_us
        return _from_micros(self._anchor_us + periods * self._every_us) if periods >= 1 else None

    def times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The firings in (after, until], ascending, computed as they are read."""
        start, end = _micros(after, "after"), _micros(until, "until")
        return self._times(start, end)

    def _times(self, after_us: int, until_us: int) -> Iterator[datetime]:
        periods = max((after_us - self._anchor_us) // self._every_us + 1, 1)
        while (firing := self._anchor_us + periods * self._every_us) <= until_us:
            yield _from_micros(firing)
            periods += 1


def _micros(instant: datetime, name: str) -> int:
    if not isinstance(instant, datetime) or instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {instant!r}")
    return (instant - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
