"""What a timed trigger's schedule answers (cron.CronSchedule, interval.IntervalSchedule), clock-free."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Schedule(Protocol):
    """Firing times of a schedule. Inputs are timezone-aware (a naive one raises ValueError); outputs UTC."""

    def next_after(self, instant: datetime) -> datetime:
        """The first firing strictly after `instant`."""
        ...

    def prev_at_or_before(self, instant: datetime) -> datetime | None:
        """The last firing at or before `instant`, None if there is none."""
        ...

    def times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The firings in (after, until], ascending, computed lazily."""
        ...
