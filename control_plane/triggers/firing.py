"""Which firings of a trigger are due and what becomes of each: pure and clock-free (`now` is an argument).

The runner (control_plane/triggers/runner.py) asks these functions under the trigger's row lock and
stores what they say; replaying them with the same cursor and clock gives the same firings, with the
same ids, which is what makes a firing happen once whoever decides it (docs/triggers.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from control_plane.triggers.schedule import Schedule

# a firing older than this when it is looked at was missed (NoETL was not running): the catch-up policy
# decides it; a younger one is on time, only late by a tick
GRACE_S = 5.0
MAX_SLOTS = 1000  # the most scheduled times decided in one look; older missed ones are summarized
_NAMESPACE = uuid.UUID("5d0c7c8e-1b4e-4f57-9a55-0e7f4c1d2a10")
_JUST_BEFORE = timedelta(microseconds=1)

Action = Literal["fire", "skip"]
Admission = Literal["pending", "skipped", "queued"]


def firing_id(trigger_id: str, key: str) -> str:
    """The firing's id: the same for the same trigger and key (a scheduled time, a message id, …)."""
    return uuid.uuid5(_NAMESPACE, f"{trigger_id}|{key}").hex


def time_key(instant: datetime) -> str:
    """A scheduled time as a firing key: UTC, to the microsecond."""
    return "at:" + instant.astimezone(UTC).isoformat(timespec="microseconds")


def jitter_delay(firing: str, jitter_s: float) -> float:
    """How long after its scheduled time the firing starts: a fraction of `jitter_s` taken from its id, so
    every process computes the same delay for it."""
    if jitter_s <= 0:
        return 0.0
    return int(firing[:8], 16) / 0x1_0000_0000 * jitter_s


def due_at(trigger_id: str, scheduled_at: datetime, jitter_s: float) -> datetime:
    """When a scheduled time's firing is due: the time plus its jitter delay."""
    delay = jitter_delay(firing_id(trigger_id, time_key(scheduled_at)), jitter_s)
    return scheduled_at + timedelta(seconds=delay)


@dataclass(frozen=True, slots=True)
class Slot:
    """One scheduled time, decided: fire it or skip it (and why)."""

    scheduled_at: datetime
    firing_id: str
    action: Action
    reason: str | None = None
    caught_up: bool = False  # fired although it was missed (the catch-up policy ran it)


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    slots: tuple[Slot, ...]
    cursor: datetime | None  # the last scheduled time decided (None: nothing decided, keep the cursor)
    missed_before: datetime | None = None  # more were missed before this time than one look decides
    next_due: datetime | None = None  # when the next undecided firing is due (for the runner's sleep)


def _times_back(schedule: Schedule, cursor: datetime, now: datetime,
                limit: int) -> tuple[list[datetime], bool]:
    """The scheduled times in (cursor, now], newest `limit` of them ascending; and whether older ones
    remain."""
    found: list[datetime] = []
    at = schedule.prev_at_or_before(now)
    while at is not None and at > cursor and len(found) < limit:
        found.append(at)
        at = schedule.prev_at_or_before(at - _JUST_BEFORE)
    more = at is not None and at > cursor
    found.reverse()
    return found, more


def plan_schedule(schedule: Schedule, *, trigger_id: str, cursor: datetime, now: datetime, catchup: str,
                  catchup_limit: int, jitter_s: float = 0.0, grace_s: float = GRACE_S,
                  max_slots: int = MAX_SLOTS) -> SchedulePlan:
    """Decide the scheduled times after `cursor` that are due at `now`.

    A time is due at its scheduled time plus its jitter delay. A due time younger than `grace_s` fires.
    The older ones were missed, and `catchup` decides them: `skip` skips them all; `latest` fires the
    newest of them unless a time on time follows it; `all` fires the newest `catchup_limit` of them.
    Times are decided in order: the first one not due yet (inside its jitter) ends the look, and the
    cursor stays before it.
    """
    times, more = _times_back(schedule, cursor, now, max_slots)
    late_before = now - timedelta(seconds=grace_s)
    decided: list[datetime] = []
    missed: list[datetime] = []
    next_due: datetime | None = None
    for at in times:
        # lateness counts from the due time: a jitter longer than the grace is a delay, not a miss
        due = due_at(trigger_id, at, jitter_s)
        if due > now:
            next_due = due
            break
        decided.append(at)
        if due < late_before:
            missed.append(at)
    if next_due is None:
        next_due = due_at(trigger_id, schedule.next_after(now), jitter_s)
    late = set(missed)
    on_time = [at for at in decided if at not in late]
    fired = set(_caught_up(missed, on_time, catchup, catchup_limit))
    slots: list[Slot] = []
    for at in decided:
        fid = firing_id(trigger_id, time_key(at))
        if at not in late:
            slots.append(Slot(at, fid, "fire"))
        elif at in fired:
            slots.append(Slot(at, fid, "fire", f"caught up after NoETL was not running (catchup: {catchup})",
                              caught_up=True))
        else:
            slots.append(Slot(at, fid, "skip", _skip_reason(catchup, catchup_limit, on_time, missed)))
    return SchedulePlan(tuple(slots), decided[-1] if decided else None,
                        missed_before=times[0] if more and times else None, next_due=next_due)


def _caught_up(missed: list[datetime], on_time: list[datetime], catchup: str, limit: int) -> list[datetime]:
    if not missed or catchup == "skip":
        return []
    if catchup == "latest":
        return [] if on_time else missed[-1:]
    return missed[-limit:]  # all, up to the limit: the newest ones


def _skip_reason(catchup: str, limit: int, on_time: list[datetime], missed: list[datetime]) -> str:
    if catchup == "skip":
        return "missed while NoETL was not running (catchup: skip)"
    if catchup == "latest":
        newer = on_time[0] if on_time else missed[-1]
        return f"missed while NoETL was not running; a newer firing ({newer.isoformat()}) runs instead " \
               "(catchup: latest)"
    return f"missed while NoETL was not running; only the newest {limit} missed firings run " \
           f"(catchup: all, catchup_limit: {limit})"


def admit(policy: str, running: Sequence[str]) -> tuple[Admission, str | None]:
    """What a firing becomes under the trigger's concurrency policy, given its runs still running."""
    if not running or policy == "allow":
        return "pending", None
    if policy == "skip":
        return "skipped", f"the previous run {running[0]} is still running (concurrency: skip)"
    return "queued", f"waits for the previous run {running[0]} to end (concurrency: queue)"
