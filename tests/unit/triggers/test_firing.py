"""The firing rules of triggers (control_plane/triggers/firing.py, payload.py, definition.py), with a fake
clock: every `now` is a datetime the test passes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from control_plane.triggers.cron import CronSchedule
from control_plane.triggers.definition import check
from control_plane.triggers.errors import TriggerSpecError
from control_plane.triggers.firing import (
    GRACE_S,
    SchedulePlan,
    admit,
    firing_id,
    jitter_delay,
    plan_schedule,
    time_key,
)
from control_plane.triggers.interval import IntervalSchedule
from control_plane.triggers.payload import render_payload
from control_plane.triggers.schedule import Schedule
from engine.dsl.triggers import TriggerSpec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVERY_MINUTE = IntervalSchedule(60, T0)  # fires at T0 + 1m, + 2m, ...
ON_TIME = GRACE_S / 2  # looked at this long after a time: it is on time
LATE = GRACE_S * 3  # ... this long after: it was missed


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def plan(schedule: Schedule = EVERY_MINUTE, *, cursor: datetime = T0, now: datetime, catchup: str = "latest",
         catchup_limit: int = 10, jitter_s: float = 0.0, trigger_id: str = "nightly",
         max_slots: int = 1000) -> SchedulePlan:
    return plan_schedule(schedule, trigger_id=trigger_id, cursor=cursor, now=now, catchup=catchup,
                         catchup_limit=catchup_limit, jitter_s=jitter_s, max_slots=max_slots)


def fired(result: SchedulePlan) -> list[datetime]:
    return [slot.scheduled_at for slot in result.slots if slot.action == "fire"]


def skipped(result: SchedulePlan) -> list[datetime]:
    return [slot.scheduled_at for slot in result.slots if slot.action == "skip"]


# ---------------------------------------------------------------- on time and catch-up


def test_a_scheduled_time_looked_at_within_the_grace_fires_on_time_and_becomes_the_cursor() -> None:
    result = plan(now=at(60 + ON_TIME))
    [slot] = result.slots
    assert (slot.scheduled_at, slot.action, slot.reason, slot.caught_up) == (at(60), "fire", None, False)
    assert slot.firing_id == firing_id("nightly", time_key(at(60)))
    assert result.cursor == at(60)
    assert result.next_due == at(120)
    assert result.missed_before is None


def test_nothing_is_decided_before_the_first_scheduled_time_and_the_cursor_is_kept() -> None:
    result = plan(now=at(59))
    assert result.slots == ()
    assert result.cursor is None
    assert result.next_due == at(60)


def test_after_a_downtime_catchup_skip_skips_every_missed_time_saying_why() -> None:
    result = plan(now=at(600 + LATE), catchup="skip")  # ten times missed, the newest beyond the grace
    assert fired(result) == []
    assert skipped(result) == [at(60 * k) for k in range(1, 11)]
    assert {slot.reason for slot in result.slots} == {"missed while NoETL was not running (catchup: skip)"}
    assert result.cursor == at(600)


def test_after_a_downtime_catchup_skip_still_fires_the_time_that_is_on_time() -> None:
    result = plan(now=at(600 + ON_TIME), catchup="skip")
    assert fired(result) == [at(600)]
    assert skipped(result) == [at(60 * k) for k in range(1, 10)]


def test_after_a_downtime_catchup_latest_fires_only_the_newest_missed_time() -> None:
    result = plan(now=at(600 + LATE), catchup="latest")
    assert fired(result) == [at(600)]
    newest = result.slots[-1]
    assert newest.caught_up is True
    assert newest.reason == "caught up after NoETL was not running (catchup: latest)"
    assert skipped(result) == [at(60 * k) for k in range(1, 10)]
    assert all("a newer firing (2026-01-01T00:10:00+00:00) runs instead" in str(slot.reason)
               for slot in result.slots[:-1])
    assert result.cursor == at(600)


def test_catchup_latest_fires_no_missed_time_when_an_on_time_one_follows() -> None:
    result = plan(now=at(600 + ON_TIME), catchup="latest")
    assert fired(result) == [at(600)]
    assert not any(slot.caught_up for slot in result.slots)
    assert skipped(result) == [at(60 * k) for k in range(1, 10)]


def test_catchup_all_fires_the_newest_missed_times_up_to_the_limit_and_skips_the_older_ones() -> None:
    result = plan(now=at(600 + LATE), catchup="all", catchup_limit=3)
    assert fired(result) == [at(480), at(540), at(600)]
    assert all(slot.caught_up for slot in result.slots if slot.action == "fire")
    assert skipped(result) == [at(60 * k) for k in range(1, 8)]
    assert all("only the newest 3 missed firings run" in str(slot.reason)
               for slot in result.slots if slot.action == "skip")
    assert result.cursor == at(600)


def test_catchup_all_under_its_limit_fires_every_missed_time() -> None:
    result = plan(now=at(180 + LATE), catchup="all", catchup_limit=10)
    assert fired(result) == [at(60), at(120), at(180)]


def test_a_second_look_with_the_returned_cursor_decides_nothing_again() -> None:
    first = plan(now=at(600 + LATE), catchup="all")
    assert first.cursor is not None
    again = plan(cursor=first.cursor, now=at(600 + LATE + 1), catchup="all")
    assert again.slots == ()
    assert again.cursor is None


# ---------------------------------------------------------------- firing ids and jitter


def test_firing_ids_are_the_same_for_the_same_trigger_and_time_and_differ_otherwise() -> None:
    assert firing_id("t", time_key(at(60))) == firing_id("t", time_key(at(60)))
    assert firing_id("t", time_key(at(60))) != firing_id("t", time_key(at(120)))
    assert firing_id("t", time_key(at(60))) != firing_id("u", time_key(at(60)))
    berlin = at(60).astimezone(ZoneInfo("Europe/Berlin"))
    assert time_key(berlin) == time_key(at(60))  # the same instant in any zone is the same key
    ids = [slot.firing_id for slot in plan(now=at(600 + LATE), catchup="all").slots]
    assert len(set(ids)) == len(ids) == 10
    assert ids == [slot.firing_id for slot in plan(now=at(600 + LATE), catchup="all").slots]


def test_a_firings_jitter_is_deterministic_and_within_zero_and_the_jitter() -> None:
    delays = [jitter_delay(firing_id("nightly", time_key(at(60 * k))), 30.0) for k in range(1, 200)]
    assert delays == [jitter_delay(firing_id("nightly", time_key(at(60 * k))), 30.0) for k in range(1, 200)]
    assert all(0.0 <= delay < 30.0 for delay in delays)
    assert len(set(delays)) > 150  # spread out, not one delay for all
    assert jitter_delay(firing_id("nightly", time_key(at(60))), 0.0) == 0.0


def test_a_jittered_time_fires_at_its_delay_and_not_before() -> None:
    delay = jitter_delay(firing_id("nightly", time_key(at(60))), 5.0)
    early = plan(now=at(60 + delay * 0.9), jitter_s=5.0)
    assert early.slots == () and early.cursor is None
    assert early.next_due == at(60 + delay)
    due = plan(now=at(60 + delay), jitter_s=5.0)
    assert fired(due) == [at(60)] and due.cursor == at(60)


def test_a_time_not_due_inside_its_jitter_ends_the_look_with_the_cursor_before_it() -> None:
    every_second = IntervalSchedule(1, T0)
    # trigger "nightly", jitter 5 s: delays 3.54, 0.66, 0.24, 2.89, 1.91 for T0+1..T0+5, so at T0+5 the
    # first three are due and T0+4 is not
    delays = [jitter_delay(firing_id("nightly", time_key(at(k))), 5.0) for k in range(1, 6)]
    assert [k + d <= 5 for k, d in zip(range(1, 6), delays, strict=True)] == [True, True, True, False, False]
    result = plan(every_second, now=at(5), jitter_s=5.0)
    assert fired(result) == [at(1), at(2), at(3)]
    assert result.cursor == at(3)
    assert result.next_due == at(4 + delays[3])


def test_a_later_time_already_due_waits_behind_an_earlier_one_that_is_not() -> None:
    every_second = IntervalSchedule(1, T0)
    # trigger "jittered": T0+1 is due only at T0+5.85, while T0+3 and T0+4 are due by T0+5
    delays = [jitter_delay(firing_id("jittered", time_key(at(k))), 5.0) for k in range(1, 6)]
    assert [k + d <= 5 for k, d in zip(range(1, 6), delays, strict=True)] == [False, False, True, True, False]
    result = plan(every_second, now=at(5), jitter_s=5.0, trigger_id="jittered")
    assert result.slots == () and result.cursor is None
    assert result.next_due == at(1 + delays[0])


def test_a_jitter_longer_than_the_grace_delays_a_firing_and_does_not_make_it_missed() -> None:
    # trigger "t1", jitter 30 s: the time T0+60 is due 13.3 s after it; looked at just past the grace, it
    # is not due yet (not missed), and at its due time it fires on time even with catchup skip
    delay = jitter_delay(firing_id("t1", time_key(at(60))), 30.0)
    assert GRACE_S < delay < 30.0
    early = plan(now=at(60 + GRACE_S + 0.5), jitter_s=30.0, catchup="skip", trigger_id="t1")
    assert early.slots == () and early.cursor is None
    due = plan(now=at(60 + delay + 0.5), jitter_s=30.0, catchup="skip", trigger_id="t1")
    [slot] = due.slots
    assert (slot.action, slot.caught_up, slot.reason) == ("fire", False, None)


# ---------------------------------------------------------------- bounded work, DST


class CountingSchedule:
    """A schedule that counts the times it is asked."""

    def __init__(self, inner: Schedule) -> None:
        self.inner = inner
        self.calls = 0

    def next_after(self, instant: datetime) -> datetime:
        self.calls += 1
        return self.inner.next_after(instant)

    def prev_at_or_before(self, instant: datetime) -> datetime | None:
        self.calls += 1
        return self.inner.prev_at_or_before(instant)

    def times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        raise AssertionError("plan_schedule must not walk every time since the cursor")


def test_a_year_of_downtime_every_second_is_decided_in_bounded_work_and_reports_the_older_ones() -> None:
    schedule = CountingSchedule(IntervalSchedule(1, T0))
    now = T0 + timedelta(days=365)
    result = plan(cast(Schedule, schedule), now=now, catchup="all", catchup_limit=10, max_slots=50)
    assert schedule.calls <= 50 + 2
    assert len(result.slots) == 50
    first = now - timedelta(seconds=49)
    assert [slot.scheduled_at for slot in result.slots] == [first + timedelta(seconds=k) for k in range(50)]
    assert result.missed_before == first  # the ~31.5 million older ones are summarized, not listed
    assert result.cursor == now
    # on time: the times within the grace (its edge included); then the newest 10 missed ones
    on_time = int(GRACE_S) + 1
    assert len(fired(result)) == on_time + 10
    assert skipped(result) == [first + timedelta(seconds=k) for k in range(50 - on_time - 10)]


def test_a_new_york_cron_across_the_spring_forward_gap_catches_up_each_local_day_once() -> None:
    daily = CronSchedule.parse("30 2 * * *", "America/New_York")  # 02:30 does not exist on 2026-03-08
    result = plan(daily, cursor=datetime(2026, 3, 6, 12, tzinfo=UTC),
                  now=datetime(2026, 3, 10, 12, tzinfo=UTC), catchup="all")
    assert fired(result) == [datetime(2026, 3, 7, 7, 30, tzinfo=UTC),  # 02:30 EST
                             datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT: the first instant after
                             datetime(2026, 3, 9, 6, 30, tzinfo=UTC),  # 02:30 EDT
                             datetime(2026, 3, 10, 6, 30, tzinfo=UTC)]
    assert all(slot.caught_up for slot in result.slots)


def test_an_hourly_new_york_cron_fires_once_for_the_skipped_hour_and_the_hour_after_it() -> None:
    hourly = CronSchedule.parse("0 * * * *", "America/New_York")
    result = plan(hourly, cursor=datetime(2026, 3, 8, 4, 30, tzinfo=UTC),
                  now=datetime(2026, 3, 8, 9, 30, tzinfo=UTC), catchup="all")
    # 00:00 and 01:00 EST, then 02:00 (skipped) and 03:00 EDT both at 07:00 UTC, 04:00 and 05:00 EDT
    assert fired(result) == [datetime(2026, 3, 8, hour, tzinfo=UTC) for hour in (5, 6, 7, 8, 9)]
    assert len({slot.firing_id for slot in result.slots}) == 5


# ---------------------------------------------------------------- concurrency


@pytest.mark.parametrize("policy", ["allow", "skip", "queue"])
def test_with_no_run_running_every_policy_lets_the_firing_start(policy: str) -> None:
    assert admit(policy, []) == ("pending", None)


def test_concurrency_allow_starts_a_firing_beside_a_running_run() -> None:
    assert admit("allow", ["exec-1"]) == ("pending", None)


def test_concurrency_skip_skips_a_firing_while_a_run_runs_naming_it() -> None:
    status, reason = admit("skip", ["exec-1", "exec-2"])
    assert status == "skipped"
    assert reason == "the previous run exec-1 is still running (concurrency: skip)"


def test_concurrency_queue_queues_a_firing_behind_a_running_run() -> None:
    status, reason = admit("queue", ["exec-1"])
    assert status == "queued"
    assert reason == "waits for the previous run exec-1 to end (concurrency: queue)"


# ---------------------------------------------------------------- payloads

BASE: dict[str, Any] = {"trigger": {"id": "t", "name": "n", "kind": "cron", "path": "etl/load"},
                        "firing": {"id": "f", "scheduled_at": "2026-01-01T00:01:00+00:00"}}


def test_a_time_trigger_without_a_template_gives_an_empty_payload() -> None:
    assert render_payload({}, BASE) == {}


@pytest.mark.parametrize("name", ["upstream", "message", "request"])
def test_an_event_trigger_without_a_template_gives_what_fired_it_under_its_name(name: str) -> None:
    value = {"execution_id": "e1", "status": "completed", "result": {"rows": 3}}
    assert render_payload({}, {**BASE, name: value}) == {name: value}


def test_a_template_reads_the_upstream_result_and_the_firing() -> None:
    context = {**BASE, "upstream": {"execution_id": "e1", "status": "completed", "result": {"rows": 3}}}
    payload = render_payload({"rows": "{{ upstream.result.rows }}", "day": "{{ firing.scheduled_at[:10] }}",
                              "note": "from {{ trigger.path }}", "fixed": [1, "two"]}, context)
    assert payload == {"rows": 3, "day": "2026-01-01", "note": "from etl/load", "fixed": [1, "two"]}


def test_a_template_that_fails_is_a_trigger_spec_error_at_the_payload() -> None:
    with pytest.raises(TriggerSpecError) as caught:
        render_payload({"rows": "{{ upstream.result.rows }}"}, BASE)  # a time trigger has no upstream
    assert caught.value.where == "payload"
    assert "the payload template failed" in caught.value.message
    assert "upstream" in caught.value.message


def test_a_template_that_does_not_give_an_object_is_a_trigger_spec_error() -> None:
    # the declaration only takes a mapping; a template stored as anything else is refused when it renders
    with pytest.raises(TriggerSpecError) as caught:
        render_payload(cast(dict[str, Any], ["{{ trigger.id }}"]), BASE)
    assert caught.value.message == "the payload template gave list, not an object"
    assert caught.value.where == "payload"


# ---------------------------------------------------------------- definitions


@pytest.mark.parametrize(("spec", "where", "words"), [
    ({"cron": "61 * * * *"}, "triggers[0].cron field 'minute'", "out of range 0-59"),
    ({"cron": "0 2 * * *", "tz": "Mars/Olympus"}, "triggers[0].tz", "unknown time zone 'Mars/Olympus'"),
    ({"every": "0.5s"}, "triggers[0].every", "shorter than the minimum of 1s"),
    ({"every": "1h", "jitter": "2h"}, "triggers[0].jitter", "longer than an hour"),
    ({"webhook": True, "jitter": "5s"}, "triggers[0].jitter", "cron and every triggers only"),
])
def test_a_definition_that_cannot_fire_is_refused_naming_the_key(spec: dict[str, Any], where: str,
                                                                   words: str) -> None:
    with pytest.raises(TriggerSpecError) as caught:
        check(TriggerSpec(**spec), "triggers[0].")
    assert caught.value.where == where
    assert words in caught.value.message


def test_a_definition_that_can_fire_passes_the_check() -> None:
    for spec in ({"cron": "@daily", "tz": "America/New_York", "jitter": "1h"}, {"every": 90},
                 {"after": "etl/load"}, {"subject": "orders.>"}, {"webhook": True}):
        check(TriggerSpec(**spec))
