"""Cron schedules for triggers (docs/triggers.md): parse an expression, compute firings; pure, clock-free.

Syntax: five fields `minute hour day-of-month month day-of-week`, each `*`, a number, a range `a-b`, a step
`*/n`, `a-b/n` or `a/n` (a to the field's maximum), or a comma list of these; months JAN-DEC and weekdays
SUN-SAT by name (any case); weekday 0 and 7 are both Sunday. Macros: @yearly, @annually, @monthly, @weekly,
@daily, @midnight, @hourly. As in Vixie cron, when both day-of-month and day-of-week are restricted (neither
starts with `*`) a day matches if either matches; otherwise both must.

Time zones: the expression is matched against the wall-clock time in `tz`, and each matching wall time
fires once:
- a wall time that does not exist (skipped by a spring-forward jump) fires at the first instant after the
  gap, so the nonexistent wall times of one gap (and the first wall time after it, if it matches too)
  make one firing at that instant;
- a wall time that occurs twice (repeated by a fall-back) fires at its first occurrence only.
So `30 2 * * *` fires exactly once every local day, and `0 * * * *` at each local hour's start, the
repeated hour of a fall-back day once.

Inputs are timezone-aware datetimes (a naive one raises ValueError); outputs are UTC, in whole minutes.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from control_plane.triggers.errors import TriggerSpecError

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
MONTH_NAMES = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
WEEKDAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
# the longest time between two firings of an expression that can fire: 29 February on one weekday (40 years
# around a century that is not a leap year), so a search this long finds a firing or proves there is none
HORIZON = timedelta(days=41 * 366)

_MINUTE = timedelta(minutes=1)
_FORMS = "a number, a range a-b, a step */n, a-b/n or a/n, or a comma list of these"
_SHAPE = ("five fields: minute hour day-of-month month day-of-week, e.g. '30 2 * * *', or a macro such as "
          "@daily")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (_Field("minute", 0, 59), _Field("hour", 0, 23), _Field("day-of-month", 1, 31),
           _Field("month", 1, 12, MONTH_NAMES), _Field("day-of-week", 0, 7, WEEKDAY_NAMES))


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression matched against the wall clock of the IANA zone `tz` (see the module docstring).

    Constructing one validates it (TriggerSpecError naming the field, the value and the fix); `parse` is
    the same, with UTC as the default zone. `expression` is kept with its whitespace collapsed.
    """

    expression: str
    tz: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _days: frozenset[int] = field(init=False, repr=False, compare=False)
    _months: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _weekdays: frozenset[int] = field(init=False, repr=False, compare=False)
    _either_day: bool = field(init=False, repr=False, compare=False)

    @classmethod
    def parse(cls, expression: str, tz: str = "UTC") -> CronSchedule:
        return cls(expression, tz)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise TriggerSpecError(f"{self.expression!r} is not a cron expression", where="cron", fix=_SHAPE)
        expression = " ".join(self.expression.split())
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "_zone", _zone(self.tz))
        parts = _expand_macro(expression).split()
        if len(parts) != 5:
            raise TriggerSpecError(f"'{expression}' has {len(parts)} field(s), not 5", where="cron",
                                   fix=_SHAPE)
        minutes, hours, days, months, weekdays = (_parse_field(part, spec)
                                                  for part, spec in zip(parts, _FIELDS, strict=True))
        object.__setattr__(self, "_minutes", tuple(sorted(minutes)))
        object.__setattr__(self, "_hours", tuple(sorted(hours)))
        object.__setattr__(self, "_days", frozenset(days))
        object.__setattr__(self, "_months", tuple(sorted(months)))
        object.__setattr__(self, "_weekdays", frozenset(day % 7 for day in weekdays))
        object.__setattr__(self, "_either_day", not parts[2].startswith("*") and not parts[4].startswith("*"))
        # with "either day" every month has each weekday; otherwise some allowed day must exist in some
        # allowed month (29 February counts: it recurs on every weekday over the years)
        if not self._either_day and not any(day <= _longest_month(month)
                                            for month in self._months for day in self._days):
            raise TriggerSpecError(f"'{expression}' never fires: no month it allows has the day it names",
                                   where="cron", fix="a day-of-month that exists in one of the months")

    def next_after(self, instant: datetime) -> datetime:
        """The first firing strictly after `instant`, in UTC."""
        after = _utc(instant, "instant")
        wall = after.astimezone(self._zone).replace(tzinfo=None, second=0, microsecond=0, fold=0)
        limit = _shift(wall, HORIZON)
        # wall times map to instants monotonically, so the first matching one past `after` is the answer
        while True:
            candidate = self._next_wall(wall, limit)
            if candidate is None:
                raise ValueError(f"'{self.expression}' has no firing after {after.isoformat()} that a "
                                 "datetime can hold")
            firing = self._instant(candidate)
            if firing > after:
                return firing
            wall = candidate + _MINUTE

    def prev_at_or_before(self, instant: datetime) -> datetime | None:
        """The last firing at or before `instant`, in UTC; None if there is none (only near year 1)."""
        before = _utc(instant, "instant")
        local = before.astimezone(self._zone)
        wall = local.replace(tzinfo=None, second=0, microsecond=0, fold=0)
        if local.fold:
            # the second pass of a repeated hour: the rest of that hour's wall times fired earlier
            offset_first, offset_now = local.replace(fold=0).utcoffset(), local.utcoffset()
            if offset_first is not None and offset_now is not None and offset_first > offset_now:
                wall += offset_first - offset_now
        limit = _shift(wall, -HORIZON)
        while True:
            candidate = self._prev_wall(wall, limit)
            if candidate is None:
                return None
            firing = self._instant(candidate)
            if firing <= before:
                return firing
            wall = candidate - _MINUTE

    def times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The firings in (after, until], ascending, computed as they are read."""
        start, end = _utc(after, "after"), _utc(until, "until")
        return self._times(start, end)

    def _times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        firing = after
        while True:
            try:
                firing = self.next_after(firing)
            except ValueError:
                return
            if firing > until:
                return
            yield firing

    def _day_matches(self, day: date) -> bool:
        by_month_day = day.day in self._days
        by_weekday = (day.weekday() + 1) % 7 in self._weekdays
        return (by_month_day or by_weekday) if self._either_day else (by_month_day and by_weekday)

    def _next_wall(self, wall: datetime, limit: datetime) -> datetime | None:
        """The first matching wall time at or after `wall` (naive, whole minute), None past `limit`."""
        try:
            while wall <= limit:
                if wall.month not in self._months:
                    month = _following(self._months, wall.month)
                    wall = (datetime(wall.year, month, 1) if month is not None
                            else datetime(wall.year + 1, self._months[0], 1))
                elif not self._day_matches(wall.date()):
                    wall = datetime(wall.year, wall.month, wall.day) + timedelta(days=1)
                elif wall.hour not in self._hours:
                    hour = _following(self._hours, wall.hour)
                    wall = (wall.replace(hour=hour, minute=0) if hour is not None
                            else datetime(wall.year, wall.month, wall.day) + timedelta(days=1))
                elif wall.minute not in self._minutes:
                    minute = _following(self._minutes, wall.minute)
                    wall = (wall.replace(minute=minute) if minute is not None
                            else wall.replace(minute=0) + timedelta(hours=1))
                else:
                    return wall
        except (OverflowError, ValueError):  # past year 9999
            return None
        return None

    def _prev_wall(self, wall: datetime, limit: datetime) -> datetime | None:
        """The last matching wall time at or before `wall` (naive, whole minute), None before `limit`."""
        try:
            while wall >= limit:
                if wall.month not in self._months:
                    month = _preceding(self._months, wall.month)
                    year = wall.year if month is not None else wall.year - 1
                    month = month if month is not None else self._months[-1]
                    wall = datetime(year, month, calendar.monthrange(year, month)[1], 23, 59)
                elif not self._day_matches(wall.date()):
                    wall = datetime(wall.year, wall.month, wall.day) - _MINUTE
                elif wall.hour not in self._hours:
                    hour = _preceding(self._hours, wall.hour)
                    wall = (wall.replace(hour=hour, minute=59) if hour is not None
                            else datetime(wall.year, wall.month, wall.day) - _MINUTE)
                elif wall.minute not in self._minutes:
                    minute = _preceding(self._minutes, wall.minute)
                    wall = (wall.replace(minute=minute) if minute is not None
                            else wall.replace(minute=0) - _MINUTE)
                else:
                    return wall
        except (OverflowError, ValueError):  # before year 1
            return None
        return None

    def _instant(self, wall: datetime) -> datetime:
        """The UTC instant a matching wall time fires at: its first occurrence, or the end of its gap."""
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)  # a repeated time's first pass
        if first.astimezone(self._zone).replace(tzinfo=None) == wall:
            return first
        # in a gap zoneinfo's two folds bracket the jump: fold=1 reads the wall time with the offset after
        # it (an instant before the jump), fold=0 with the one before (an instant after it)
        early = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        low, high = sorted((int(early.timestamp()), int(first.timestamp())))
        offset_before = self._offset(low)
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) == offset_before:
                low = middle
            else:
                high = middle
        jump = datetime.fromtimestamp(high, UTC)
        return jump if jump.second == 0 else jump.replace(second=0) + _MINUTE

    def _offset(self, timestamp: int) -> timedelta | None:
        return datetime.fromtimestamp(timestamp, UTC).astimezone(self._zone).utcoffset()


def _zone(tz: object) -> ZoneInfo:
    fix = "an IANA zone such as Europe/Berlin or UTC"
    if not isinstance(tz, str) or not tz.strip():
        raise TriggerSpecError(f"{tz!r} is not a time zone", where="tz", fix=fix)
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise TriggerSpecError(f"unknown time zone '{tz}'", where="tz", fix=fix) from error


def _expand_macro(expression: str) -> str:
    if not expression.startswith("@"):
        return expression
    macro = expression.lower()
    if macro == "@reboot":
        raise TriggerSpecError("'@reboot' is not supported: a schedule fires at times, not at a server start",
                               where="cron",
                               fix="a time-based schedule such as @daily or '0 * * * *'; to run after "
                                   "another playbook, an `after:` trigger")
    if macro not in MACROS:
        raise TriggerSpecError(f"unknown macro '{expression}'", where="cron",
                               fix=f"one of {', '.join(MACROS)}, or five fields such as '30 2 * * *'")
    return MACROS[macro]


def _parse_field(text: str, spec: _Field) -> set[int]:
    where = f"cron field '{spec.name}'"
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise TriggerSpecError(f"'{text}' has an empty list item", where=where, fix=_fix(spec))
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isdigit() and step_text.isascii()):
                raise TriggerSpecError(f"step '{step_text}' in '{item}' is not a whole number", where=where,
                                       fix="a step such as */5, a positive whole number")
            step = int(step_text)
            if step == 0:
                raise TriggerSpecError(f"step 0 in '{item}' never advances", where=where,
                                       fix="a step of 1 or more, such as */5")
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, spec, item), _value(last, spec, item)
            if low > high:
                raise TriggerSpecError(f"range '{base}' runs backwards", where=where,
                                       fix=f"a range low-high, such as {spec.low}-{spec.high}")
        else:
            low = _value(base, spec, item)
            high = spec.high if slash else low
        values.update(range(low, high + 1, step))
    return values


def _value(text: str, spec: _Field, item: str) -> int:
    where = f"cron field '{spec.name}'"
    if text.isdigit() and text.isascii():
        number = int(text)
        if not spec.low <= number <= spec.high:
            raise TriggerSpecError(f"{spec.name} '{text}' is out of range {spec.low}-{spec.high}",
                                   where=where, fix=_fix(spec))
        return number
    if spec.names is not None and text.upper() in spec.names:
        return spec.names[text.upper()]
    if spec.names is not None:
        raise TriggerSpecError(f"unknown {spec.name} name '{text}' in '{item}'", where=where, fix=_fix(spec))
    raise TriggerSpecError(f"'{text}' in '{item}' is not a number", where=where, fix=_fix(spec))


def _fix(spec: _Field) -> str:
    allowed = f"values {spec.low}-{spec.high}"
    if spec.names is not None:
        names = list(spec.names)
        allowed += f" or names {names[0]}-{names[-1]}"
    if spec.name == "day-of-week":
        allowed += " (0 and 7 are Sunday)"
    return f"{allowed}: {_FORMS}"


def _longest_month(month: int) -> int:
    return calendar.monthrange(2000, month)[1]  # 2000 is a leap year: February's 29th counts


def _following(values: tuple[int, ...], current: int) -> int | None:
    index = bisect_right(values, current)
    return values[index] if index < len(values) else None


def _preceding(values: tuple[int, ...], current: int) -> int | None:
    index = bisect_left(values, current)
    return values[index - 1] if index > 0 else None


def _utc(instant: datetime, name: str) -> datetime:
    if not isinstance(instant, datetime) or instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {instant!r}")
    return instant.astimezone(UTC)


def _shift(wall: datetime, by: timedelta) -> datetime:
    try:
        return wall + by
    except OverflowError:
        return datetime.max if by > timedelta(0) else datetime.min
