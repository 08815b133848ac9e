"""Interval schedules and durations: the accepted forms, their rejections, and exact arithmetic."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from control_plane.triggers.errors import TriggerSpecError
from control_plane.triggers.interval import IntervalSchedule, parse_duration

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172_800), ("1h30m", 5400), ("90", 90), (90, 90),
    (1.5, 1.5), ("2.5", 2.5), ("1.5h", 5400), (" 1H 30M ", 5400), ("2d3h4m5s", 2 * 86_400 + 3 * 3600 + 245),
    ("0.5s", 0.5),
])
def test_a_duration_is_read_in_each_accepted_form(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("", "the duration is empty"), ("   ", "the duration is empty"), ("-5m", "'-5m' is negative"),
    ("-5", "'-5' is negative"), (-5, "'-5' is negative"), (0, "'0' is zero"), ("0s", "'0s' is zero"),
    ("0h0m", "is zero"), ("abc", "'abc' is not a duration"), ("5x", "'5x' is not a duration"),
    ("1m1h", "'1m1h' is not a duration"), ("1h 30", "is not a duration"), (float("nan"), "not a finite"),
    (float("inf"), "not a finite"), (True, "True is not a duration"), (None, "None is not a duration"),
])
def test_an_unusable_duration_is_refused_with_the_accepted_forms(value: Any, message: str) -> None:
    with pytest.raises(TriggerSpecError) as raised:
        parse_duration(value)
    assert message in raised.value.message
    assert raised.value.where == "every"
    assert raised.value.fix is not None and "30s, 15m, 1h, 2d or 1h30m" in raised.value.fix
    assert "90" in raised.value.fix


def test_a_duration_error_names_the_place_it_was_read_from() -> None:
    with pytest.raises(TriggerSpecError) as raised:
        parse_duration("soon", where="jitter")
    assert raised.value.where == "jitter" and str(raised.value).startswith("jitter: 'soon'")


@pytest.mark.parametrize("every", [0.5, 0, -10, float("nan"), float("inf")])
def test_an_interval_shorter_than_a_second_or_not_a_number_is_refused(every: float) -> None:
    with pytest.raises(TriggerSpecError) as raised:
        IntervalSchedule(every, ANCHOR)
    assert raised.value.where == "every" and raised.value.fix


def test_an_interval_of_exactly_one_second_is_accepted() -> None:
    assert IntervalSchedule(1, ANCHOR).next_after(ANCHOR) == ANCHOR + timedelta(seconds=1)


def test_firings_start_one_period_after_the_anchor() -> None:
    schedule = IntervalSchedule(600, ANCHOR)
    assert schedule.next_after(ANCHOR - timedelta(days=3)) == ANCHOR + timedelta(minutes=10)
    assert schedule.next_after(ANCHOR) == ANCHOR + timedelta(minutes=10)


def test_next_after_is_strictly_after_and_prev_at_or_before_includes_the_instant() -> None:
    schedule = IntervalSchedule(600, ANCHOR)
    firing = ANCHOR + timedelta(minutes=30)
    assert schedule.next_after(firing) == ANCHOR + timedelta(minutes=40)
    assert schedule.prev_at_or_before(firing) == firing
    between = ANCHOR + timedelta(minutes=35)
    assert schedule.next_after(between) == ANCHOR + timedelta(minutes=40)
    assert schedule.prev_at_or_before(between) == firing


def test_there_is_no_previous_firing_before_the_first_one() -> None:
    schedule = IntervalSchedule(600, ANCHOR)
    assert schedule.prev_at_or_before(ANCHOR) is None
    assert schedule.prev_at_or_before(ANCHOR + timedelta(minutes=9, seconds=59)) is None
    assert schedule.prev_at_or_before(ANCHOR + timedelta(minutes=10)) == ANCHOR + timedelta(minutes=10)


def test_firings_are_exact_over_ten_thousand_periods_of_a_fraction_of_a_second() -> None:
    schedule = IntervalSchedule(1.1, ANCHOR)  # 1.1 has no exact binary form
    firings = list(schedule.times(ANCHOR, ANCHOR + timedelta(seconds=11_000)))
    assert len(firings) == 10_000
    assert all(firing == ANCHOR + timedelta(microseconds=1_100_000 * k)
               for k, firing in enumerate(firings, 1))
    assert firings[-1] == ANCHOR + timedelta(seconds=11_000)
    assert schedule.next_after(firings[-1]) == ANCHOR + timedelta(seconds=11_001.1)
    assert schedule.prev_at_or_before(firings[-1]) == firings[-1]


def test_prev_and_next_agree_at_many_instants() -> None:
    schedule = IntervalSchedule(7.3, ANCHOR)
    for step in range(0, 200_000, 997):
        instant = ANCHOR + timedelta(milliseconds=step * 13)
        following = schedule.next_after(instant)
        assert following > instant and schedule.prev_at_or_before(following) == following
        previous = schedule.prev_at_or_before(instant)
        if previous is not None:
            assert previous <= instant and schedule.next_after(previous) == following


def test_times_gives_the_firings_in_the_half_open_window_lazily() -> None:
    schedule = IntervalSchedule(3600, ANCHOR)
    week = list(schedule.times(ANCHOR, ANCHOR + timedelta(days=7)))
    assert len(week) == 7 * 24
    assert (week[0], week[-1]) == (ANCHOR + timedelta(hours=1), ANCHOR + timedelta(days=7))
    forever = schedule.times(ANCHOR, datetime(9000, 1, 1, tzinfo=UTC))
    assert list(itertools.islice(forever, 2)) == [ANCHOR + timedelta(hours=1), ANCHOR + timedelta(hours=2)]


def test_firings_are_utc_whatever_the_zone_of_the_anchor() -> None:
    berlin = datetime(2026, 3, 29, 1, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # across the spring forward
    schedule = IntervalSchedule(3600, berlin)
    firings = list(schedule.times(berlin, berlin.astimezone(UTC) + timedelta(hours=3)))
    assert [f.tzinfo for f in firings] == [UTC] * 3
    assert firings == [datetime(2026, 3, 29, h, tzinfo=UTC) for h in (1, 2, 3)]  # elapsed time, not wall


def test_a_naive_datetime_is_refused() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalSchedule(60, naive)
    schedule = IntervalSchedule(60, ANCHOR)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.prev_at_or_before(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.times(ANCHOR, naive)
