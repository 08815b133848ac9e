"""Cron schedules: the syntax, its rejections, wall-clock matching across DST, and prev/next consistency."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from control_plane.errors import InvalidArgumentError
from control_plane.triggers.cron import CronSchedule
from control_plane.triggers.errors import TriggerSpecError
from control_plane.triggers.interval import IntervalSchedule
from control_plane.triggers.schedule import Schedule


def at(text: str) -> datetime:
    """An instant written in ISO form; without an offset it is UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(instants: list[datetime]) -> list[str]:
    return [t.strftime("%Y-%m-%dT%H:%MZ") for t in instants]


def upcoming(expression: str, start: str, count: int, tz: str = "UTC") -> list[str]:
    schedule = CronSchedule.parse(expression, tz)
    found: list[datetime] = []
    instant = at(start)
    for _ in range(count):
        instant = schedule.next_after(instant)
        found.append(instant)
    return iso(found)


def local_day(expression: str, tz: str, day: str) -> list[str]:
    """The firings of one local calendar day, in UTC."""
    zone = ZoneInfo(tz)
    first = date.fromisoformat(day)
    start = datetime(first.year, first.month, first.day, tzinfo=zone)
    following = first + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    tick = timedelta(microseconds=1)
    return iso(list(CronSchedule.parse(expression, tz).times(start - tick, end - tick)))


def matches_in_utc(expression: str, minute: datetime) -> bool:
    """A plain reading of the syntax for the brute-force comparison (UTC, numbers, `*`, `*/n`, lists)."""
    fields = expression.split()
    values = (minute.minute, minute.hour, minute.day, minute.month, (minute.weekday() + 1) % 7)
    limits = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))

    def allowed(text: str, value: int, low: int, high: int) -> bool:
        for item in text.split(","):
            base, _, step = item.partition("/")
            first, last = (low, high) if base == "*" else (int(base.split("-")[0]), int(base.split("-")[-1]))
            if step and base != "*" and "-" not in base:
                last = high
            if first <= value <= last and (value - first) % int(step or 1) == 0:
                return True
        return False

    hits = [allowed(text, value, *limit) for text, value, limit in zip(fields, values, limits, strict=True)]
    day_either = not fields[2].startswith("*") and not fields[4].startswith("*")
    day = (hits[2] or hits[4]) if day_either else (hits[2] and hits[4])
    return hits[0] and hits[1] and hits[3] and day


# the syntax


def test_a_star_in_every_field_fires_every_minute() -> None:
    assert upcoming("* * * * *", "2026-05-01T10:00:30", 3) == [
        "2026-05-01T10:01Z", "2026-05-01T10:02Z", "2026-05-01T10:03Z"]


def test_plain_numbers_fire_at_that_minute_and_hour_each_day() -> None:
    assert upcoming("5 4 * * *", "2026-05-01T04:05", 2) == ["2026-05-02T04:05Z", "2026-05-03T04:05Z"]


def test_next_after_is_strictly_after_the_instant_given() -> None:
    schedule = CronSchedule.parse("0 12 * * *")
    assert schedule.next_after(at("2026-05-01T12:00")) == at("2026-05-02T12:00")
    assert schedule.next_after(at("2026-05-01T11:59:59.999999")) == at("2026-05-01T12:00")


def test_a_range_fires_at_each_value_from_its_low_to_its_high_end() -> None:
    assert upcoming("0 9-11 * * *", "2026-05-01T00:00", 4) == [
        "2026-05-01T09:00Z", "2026-05-01T10:00Z", "2026-05-01T11:00Z", "2026-05-02T09:00Z"]


def test_a_step_over_a_star_fires_at_each_multiple() -> None:
    assert upcoming("*/20 10 * * *", "2026-05-01T00:00", 4) == [
        "2026-05-01T10:00Z", "2026-05-01T10:20Z", "2026-05-01T10:40Z", "2026-05-02T10:00Z"]


def test_a_step_over_a_range_stays_inside_the_range() -> None:
    assert upcoming("10-30/10 10 * * *", "2026-05-01T00:00", 4) == [
        "2026-05-01T10:10Z", "2026-05-01T10:20Z", "2026-05-01T10:30Z", "2026-05-02T10:10Z"]


def test_a_step_from_a_start_value_runs_to_the_field_s_maximum() -> None:
    assert upcoming("5/20 10 * * *", "2026-05-01T00:00", 4) == [
        "2026-05-01T10:05Z", "2026-05-01T10:25Z", "2026-05-01T10:45Z", "2026-05-02T10:05Z"]


def test_a_comma_list_mixes_numbers_ranges_and_steps() -> None:
    assert upcoming("0,30 8,20-21 * * *", "2026-05-01T00:00", 7) == [
        "2026-05-01T08:00Z", "2026-05-01T08:30Z", "2026-05-01T20:00Z", "2026-05-01T20:30Z",
        "2026-05-01T21:00Z", "2026-05-01T21:30Z", "2026-05-02T08:00Z"]


def test_month_names_are_read_in_any_case() -> None:
    assert upcoming("0 0 1 JAN,jul *", "2026-02-01T00:00", 3) == [
        "2026-07-01T00:00Z", "2027-01-01T00:00Z", "2027-07-01T00:00Z"]
    assert upcoming("0 0 1 Mar-May *", "2026-01-01T00:00", 4) == [
        "2026-03-01T00:00Z", "2026-04-01T00:00Z", "2026-05-01T00:00Z", "2027-03-01T00:00Z"]


def test_weekday_names_select_those_days_of_the_week() -> None:
    # 2026-05-01 is a Friday
    assert upcoming("0 9 * * mon-FRI", "2026-05-01T10:00", 3) == [
        "2026-05-04T09:00Z", "2026-05-05T09:00Z", "2026-05-06T09:00Z"]
    assert upcoming("0 9 * * SAT,sun", "2026-05-01T10:00", 3) == [
        "2026-05-02T09:00Z", "2026-05-03T09:00Z", "2026-05-09T09:00Z"]


def test_weekday_seven_is_sunday_as_is_weekday_zero() -> None:
    sundays = upcoming("0 0 * * 0", "2026-05-01T00:00", 3)
    assert sundays == ["2026-05-03T00:00Z", "2026-05-10T00:00Z", "2026-05-17T00:00Z"]
    assert upcoming("0 0 * * 7", "2026-05-01T00:00", 3) == sundays
    assert upcoming("0 0 * * SUN", "2026-05-01T00:00", 3) == sundays
    assert upcoming("0 0 * * 5-7", "2026-05-01T00:00", 3) == [
        "2026-05-02T00:00Z", "2026-05-03T00:00Z", "2026-05-08T00:00Z"]


def test_when_day_of_month_and_day_of_week_are_both_restricted_either_one_matches() -> None:
    # the 13th, and every Friday (2026-05-01, -08, -15; the 13th is a Wednesday)
    assert upcoming("0 0 13 * FRI", "2026-04-30T12:00", 4) == [
        "2026-05-01T00:00Z", "2026-05-08T00:00Z", "2026-05-13T00:00Z", "2026-05-15T00:00Z"]


def test_when_one_day_field_starts_with_a_star_both_must_match() -> None:
    assert upcoming("0 0 * * FRI", "2026-04-30T12:00", 2) == ["2026-05-01T00:00Z", "2026-05-08T00:00Z"]
    assert upcoming("0 0 13 * *", "2026-04-30T12:00", 2) == ["2026-05-13T00:00Z", "2026-06-13T00:00Z"]
    # */2 restricts the days to odd ones, but starts with a star: odd-numbered Fridays only
    assert upcoming("0 0 */2 * FRI", "2026-04-30T12:00", 3) == [
        "2026-05-01T00:00Z", "2026-05-15T00:00Z", "2026-05-29T00:00Z"]


def test_a_day_of_the_month_that_only_a_weekday_can_reach_still_fires_through_the_weekday() -> None:
    # 30 February never exists, but with both fields restricted the Mondays of February fire
    assert upcoming("0 0 30 2 MON", "2026-01-01T00:00", 2) == ["2026-02-02T00:00Z", "2026-02-09T00:00Z"]


@pytest.mark.parametrize(("macro", "expression"), [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *"),
    ("@DAILY", "0 0 * * *"),
])
def test_each_macro_fires_as_the_expression_it_stands_for(macro: str, expression: str) -> None:
    assert upcoming(macro, "2026-05-01T10:30", 5) == upcoming(expression, "2026-05-01T10:30", 5)


def test_parse_defaults_to_utc_and_keeps_the_expression_with_its_whitespace_collapsed() -> None:
    schedule = CronSchedule.parse("  0   12 * *  * ")
    assert (schedule.expression, schedule.tz) == ("0 12 * * *", "UTC")
    assert schedule == CronSchedule("0 12 * * *", "UTC")
    assert CronSchedule.parse("0 12 * * *", "Europe/Berlin") != schedule


def test_firings_are_whole_minutes_in_utc_whatever_the_zone_of_the_input() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Berlin")
    firing = schedule.next_after(datetime(2026, 5, 1, 3, 7, 42, tzinfo=ZoneInfo("Asia/Tokyo")))
    assert firing == at("2026-05-01T07:00") and firing.tzinfo is UTC
    assert (firing.second, firing.microsecond) == (0, 0)


def test_the_skipping_search_agrees_with_a_minute_by_minute_reading() -> None:
    rng = random.Random(7)
    expressions = ["*/7 * * * *", "0 */5 * * *", "15,45 3-9 * * *", "0 0 1,15 * *", "30 12 * * 1,3",
                   "0 0 13 * 5", "5 0 */2 * 0", "0 6 * 2 *", "59 23 31 * *", "0 12 1-7 * 1"]
    for expression in expressions:
        schedule = CronSchedule.parse(expression)
        start = at("2026-01-01T00:00") + timedelta(minutes=rng.randrange(60 * 24 * 300))
        span = 60 * 24 * 40
        expected = [start + timedelta(minutes=m) for m in range(1, span + 1)
                    if matches_in_utc(expression, start + timedelta(minutes=m))]
        assert list(schedule.times(start, start + timedelta(minutes=span))) == expected, expression


# rejections


@pytest.mark.parametrize(("expression", "where", "message"), [
    ("0 0 * *", "cron", "'0 0 * *' has 4 field(s), not 5"),
    ("0 0 0 * * *", "cron", "has 6 field(s), not 5"),
    ("", "cron", "has 0 field(s)"),
    ("60 * * * *", "cron field 'minute'", "minute '60' is out of range 0-59"),
    ("0 24 * * *", "cron field 'hour'", "hour '24' is out of range 0-23"),
    ("0 0 0 * *", "cron field 'day-of-month'", "day-of-month '0' is out of range 1-31"),
    ("0 0 32 * *", "cron field 'day-of-month'", "day-of-month '32' is out of range 1-31"),
    ("0 0 * 13 *", "cron field 'month'", "month '13' is out of range 1-12"),
    ("0 0 * * 8", "cron field 'day-of-week'", "day-of-week '8' is out of range 0-7"),
    ("*/0 * * * *", "cron field 'minute'", "step 0 in '*/0'"),
    ("*/x * * * *", "cron field 'minute'", "step 'x' in '*/x' is not a whole number"),
    ("0 5-2 * * *", "cron field 'hour'", "range '5-2' runs backwards"),
    ("0 0 * FOO *", "cron field 'month'", "unknown month name 'FOO'"),
    ("0 0 * * FUNDAY", "cron field 'day-of-week'", "unknown day-of-week name 'FUNDAY'"),
    ("0 MON * * *", "cron field 'hour'", "'MON' in 'MON' is not a number"),
    ("1,,2 * * * *", "cron field 'minute'", "'1,,2' has an empty list item"),
    ("-5 * * * *", "cron field 'minute'", "is not a number"),
    ("@fortnightly", "cron", "unknown macro '@fortnightly'"),
    ("@reboot", "cron", "'@reboot' is not supported"),
    ("0 0 30 2 *", "cron", "'0 0 30 2 *' never fires"),
    ("0 0 31 4,6,9,11 *", "cron", "never fires"),
])
def test_an_unusable_expression_is_refused_naming_the_field_and_the_value(expression: str, where: str,
                                                                          message: str) -> None:
    with pytest.raises(TriggerSpecError) as raised:
        CronSchedule.parse(expression)
    assert raised.value.where == where
    assert message in raised.value.message
    assert raised.value.fix and str(raised.value) == f"{where}: {raised.value.message} ({raised.value.fix})"


def test_a_field_error_s_fix_lists_the_allowed_values_and_forms() -> None:
    with pytest.raises(TriggerSpecError) as raised:
        CronSchedule.parse("0 0 * * 9")
    assert raised.value.fix is not None
    assert "values 0-7" in raised.value.fix and "SUN-SAT" in raised.value.fix and "*/n" in raised.value.fix


def test_reboot_is_refused_with_what_to_use_instead() -> None:
    with pytest.raises(TriggerSpecError) as raised:
        CronSchedule.parse("@reboot")
    assert raised.value.fix is not None and "@daily" in raised.value.fix


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../etc/passwd", "utc+2"])
def test_an_unknown_time_zone_is_refused_with_an_example_of_a_good_one(tz: str) -> None:
    with pytest.raises(TriggerSpecError) as raised:
        CronSchedule.parse("0 0 * * *", tz)
    assert raised.value.where == "tz"
    assert raised.value.fix == "an IANA zone such as Europe/Berlin or UTC"


def test_a_definition_error_is_an_invalid_argument_and_a_value_error() -> None:
    with pytest.raises(InvalidArgumentError):
        CronSchedule.parse("61 * * * *")
    with pytest.raises(ValueError):
        CronSchedule.parse("61 * * * *")


def test_a_naive_datetime_is_refused() -> None:
    schedule = CronSchedule.parse("0 0 * * *")
    naive = datetime(2026, 5, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.prev_at_or_before(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.times(naive, at("2026-05-02T00:00"))


# time zones and DST


def test_the_expression_is_matched_against_the_wall_clock_of_its_zone() -> None:
    assert upcoming("0 9 * * *", "2026-01-10T00:00", 1, "America/New_York") == ["2026-01-10T14:00Z"]
    assert upcoming("0 9 * * *", "2026-07-10T00:00", 1, "America/New_York") == ["2026-07-10T13:00Z"]


def test_a_daily_job_in_the_spring_forward_gap_fires_once_when_the_clock_jumps() -> None:
    assert local_day("30 2 * * *", "America/New_York", "2026-03-07") == ["2026-03-07T07:30Z"]
    assert local_day("30 2 * * *", "America/New_York", "2026-03-08") == ["2026-03-08T07:00Z"]  # 03:00 EDT
    assert local_day("30 2 * * *", "America/New_York", "2026-03-09") == ["2026-03-09T06:30Z"]
    assert local_day("30 2 * * *", "Europe/Berlin", "2026-03-29") == ["2026-03-29T01:00Z"]  # 03:00 CEST
    assert local_day("30 2 * * *", "Australia/Sydney", "2026-10-04") == ["2026-10-03T16:00Z"]  # 03:00 AEDT


def test_a_daily_job_in_the_repeated_hour_of_a_fall_back_day_fires_once_at_its_first_occurrence() -> None:
    assert local_day("30 1 * * *", "America/New_York", "2026-11-01") == ["2026-11-01T05:30Z"]  # 01:30 EDT
    assert local_day("30 2 * * *", "America/New_York", "2026-11-01") == ["2026-11-01T07:30Z"]  # not repeated
    assert local_day("30 2 * * *", "Europe/Berlin", "2026-10-25") == ["2026-10-25T00:30Z"]  # 02:30 CEST
    assert local_day("30 2 * * *", "Australia/Sydney", "2026-04-05") == ["2026-04-04T15:30Z"]  # 02:30 AEDT


def test_a_schedule_anchored_in_the_repeated_hour_does_not_fire_again_in_its_second_pass() -> None:
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    second_pass = at("2026-11-01T06:15")  # 01:15 EST, after 01:30 EDT fired
    assert schedule.next_after(second_pass) == at("2026-11-02T06:30")
    assert schedule.prev_at_or_before(second_pass) == at("2026-11-01T05:30")
    assert schedule.prev_at_or_before(at("2026-11-01T06:45")) == at("2026-11-01T05:30")


@pytest.mark.parametrize("tz", ["America/New_York", "Europe/Berlin", "Australia/Sydney", "UTC"])
def test_a_daily_job_at_two_thirty_fires_exactly_once_every_local_day_of_a_year(tz: str) -> None:
    zone = ZoneInfo(tz)
    firings = list(CronSchedule.parse("30 2 * * *", tz).times(at("2025-12-31T12:00"), at("2026-12-31T12:00")))
    days = Counter(firing.astimezone(zone).date() for firing in firings)
    assert len(days) == len(firings) == 365 and set(days.values()) == {1}


def test_an_hourly_job_fires_at_each_local_hour_start_across_new_york_s_transitions() -> None:
    spring = local_day("0 * * * *", "America/New_York", "2026-03-08")
    assert len(spring) == 23 and spring[:3] == ["2026-03-08T05:00Z", "2026-03-08T06:00Z", "2026-03-08T07:00Z"]
    autumn = local_day("0 * * * *", "America/New_York", "2026-11-01")
    # 01:00 EDT (05:00Z) fires; 01:00 EST (06:00Z), the hour's second pass, does not
    assert len(autumn) == 24 and autumn[:3] == ["2026-11-01T04:00Z", "2026-11-01T05:00Z", "2026-11-01T07:00Z"]


def test_an_hourly_job_fires_at_each_local_hour_start_across_berlin_s_transitions() -> None:
    spring = local_day("0 * * * *", "Europe/Berlin", "2026-03-29")
    assert len(spring) == 23 and spring[:3] == ["2026-03-28T23:00Z", "2026-03-29T00:00Z", "2026-03-29T01:00Z"]
    autumn = local_day("0 * * * *", "Europe/Berlin", "2026-10-25")
    assert len(autumn) == 24 and autumn[:4] == [
        "2026-10-24T22:00Z", "2026-10-24T23:00Z", "2026-10-25T00:00Z", "2026-10-25T02:00Z"]


def test_an_hourly_job_fires_at_each_local_hour_start_across_sydney_s_transitions() -> None:
    autumn = local_day("0 * * * *", "Australia/Sydney", "2026-04-05")
    assert len(autumn) == 24 and "2026-04-04T16:00Z" not in autumn and "2026-04-04T15:00Z" in autumn
    spring = local_day("0 * * * *", "Australia/Sydney", "2026-10-04")
    assert len(spring) == 23 and spring.count("2026-10-03T16:00Z") == 1


def test_the_nonexistent_quarter_hours_of_a_spring_gap_make_one_firing_at_the_jump() -> None:
    assert local_day("*/15 2 * * *", "America/New_York", "2026-03-08") == ["2026-03-08T07:00Z"]
    assert local_day("*/15 2 * * *", "Europe/Berlin", "2026-03-29") == ["2026-03-29T01:00Z"]
    assert local_day("*/15 2 * * *", "Australia/Sydney", "2026-10-04") == ["2026-10-03T16:00Z"]


def test_the_gap_s_firing_and_the_matching_first_minute_after_it_are_one_firing() -> None:
    assert local_day("*/15 2,3 * * *", "America/New_York", "2026-03-08") == [
        "2026-03-08T07:00Z", "2026-03-08T07:15Z", "2026-03-08T07:30Z", "2026-03-08T07:45Z"]


def test_quarter_hours_in_the_repeated_hour_fire_once_each() -> None:
    assert local_day("*/15 1 * * *", "America/New_York", "2026-11-01") == [
        "2026-11-01T05:00Z", "2026-11-01T05:15Z", "2026-11-01T05:30Z", "2026-11-01T05:45Z"]
    assert local_day("*/15 2 * * *", "Europe/Berlin", "2026-10-25") == [
        "2026-10-25T00:00Z", "2026-10-25T00:15Z", "2026-10-25T00:30Z", "2026-10-25T00:45Z"]


def test_every_minute_across_a_fall_back_skips_the_repeated_pass_and_resumes_after_it() -> None:
    firings = local_day("* * * * *", "America/New_York", "2026-11-01")
    assert len(firings) == 24 * 60  # 25 hours of clock, the repeated hour once
    assert "2026-11-01T05:59Z" in firings and "2026-11-01T06:00Z" not in firings
    assert "2026-11-01T06:59Z" not in firings and "2026-11-01T07:00Z" in firings


# leap day and long gaps


def test_a_leap_day_job_fires_on_each_29th_of_february_and_answers_quickly() -> None:
    schedule = CronSchedule.parse("0 0 29 2 *")
    started = time.perf_counter()
    assert schedule.next_after(at("2025-01-01T00:00")) == at("2028-02-29T00:00")
    assert schedule.next_after(at("2028-02-29T00:00")) == at("2032-02-29T00:00")
    assert schedule.prev_at_or_before(at("2027-06-01T00:00")) == at("2024-02-29T00:00")
    assert time.perf_counter() - started < 0.5


def test_a_leap_day_job_skips_a_century_that_is_not_a_leap_year() -> None:
    schedule = CronSchedule.parse("0 0 29 2 *")
    assert schedule.next_after(at("2097-01-01T00:00")) == at("2104-02-29T00:00")
    assert schedule.prev_at_or_before(at("2103-12-31T00:00")) == at("2096-02-29T00:00")


def test_the_rarest_expression_that_can_fire_is_still_found() -> None:
    # 29 February on a Sunday (*/7 over 0-7 is Sunday; a star first, so both day fields must match)
    schedule = CronSchedule.parse("0 0 29 2 */7")
    assert schedule.next_after(at("2089-01-01T00:00")) == at("2128-02-29T00:00")
    assert schedule.prev_at_or_before(at("2128-02-28T00:00")) == at("2088-02-29T00:00")


# prev/next consistency and times()


@pytest.mark.parametrize(("expression", "tz"), [
    ("30 2 * * *", "America/New_York"), ("0 * * * *", "America/New_York"), ("*/15 2 * * *", "Europe/Berlin"),
    ("*/15 1,2 * * *", "America/New_York"), ("30 1 * * *", "America/New_York"), ("0 0 29 2 *", "UTC"),
    ("0 9 * * MON-FRI", "Australia/Sydney"), ("7 */3 13 * FRI", "Europe/Berlin"),
    ("* * * * *", "Europe/Berlin"),
])
def test_prev_and_next_agree_at_many_instants(expression: str, tz: str) -> None:
    schedule = CronSchedule.parse(expression, tz)
    rng = random.Random(expression)
    windows = [at("2026-03-07T00:00"), at("2026-03-28T00:00"), at("2026-10-24T00:00"), at("2026-10-31T00:00"),
               at("2026-04-03T12:00"), at("2026-10-02T12:00")]
    instants = [start + timedelta(seconds=rng.randrange(3 * 86_400)) for start in windows for _ in range(40)]
    instants += [start + timedelta(minutes=m) for start in windows[:4] for m in range(0, 3 * 1440, 17)]
    for instant in instants:
        following = schedule.next_after(instant)
        assert following > instant
        assert schedule.prev_at_or_before(following) == following
        previous = schedule.prev_at_or_before(instant)
        assert previous is not None and previous <= instant
        assert schedule.next_after(previous) > instant
        assert schedule.next_after(previous) == following


def test_times_over_a_week_gives_the_expected_count() -> None:
    week = (at("2026-05-03T00:00"), at("2026-05-10T00:00"))  # Sunday to Sunday
    assert len(list(CronSchedule.parse("0 9 * * MON-FRI").times(*week))) == 5
    assert len(list(CronSchedule.parse("*/15 * * * *").times(*week))) == 7 * 24 * 4
    assert len(list(CronSchedule.parse("@daily").times(*week))) == 7  # the end is included, the start not
    new_york = ZoneInfo("America/New_York")
    local_week = (datetime(2026, 3, 5, tzinfo=new_york), datetime(2026, 3, 12, tzinfo=new_york))
    hourly = list(CronSchedule.parse("0 * * * *", "America/New_York").times(*local_week))
    assert len(hourly) == 7 * 24 - 1  # a local week with a spring forward has one hour less


def test_times_is_lazy_and_ascending_without_duplicates() -> None:
    forever = CronSchedule.parse("* * * * *").times(at("2026-01-01T00:00"), at("9000-01-01T00:00"))
    assert iso(list(itertools.islice(forever, 3))) == ["2026-01-01T00:01Z", "2026-01-01T00:02Z",
                                                       "2026-01-01T00:03Z"]
    firings = list(CronSchedule.parse("*/15 1-3 * * *", "America/New_York").times(
        at("2026-03-07T00:00"), at("2026-03-10T00:00")))
    assert firings == sorted(set(firings))


def test_both_schedules_satisfy_the_schedule_protocol() -> None:
    assert isinstance(CronSchedule.parse("@hourly"), Schedule)
    assert isinstance(IntervalSchedule(60, at("2026-01-01T00:00")), Schedule)
