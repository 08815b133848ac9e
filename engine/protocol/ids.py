"""Execution ids (spec 13): positive 64-bit integers, time-ordered, written as their decimal digits.

Every execution id is made here. The layout is Snowflake's: bits 62..22 hold the milliseconds since
EPOCH (2010-01-01 UTC), bits 21..0 tell apart the ids of one millisecond, and bit 63 is 0, so an id is
always below 2**63 (it fits a signed BIGINT). From 2017-07-22 to 2079-09-07 every id has exactly 19
digits (earlier clocks are read as 2017-07-22), so ids sort the same way as numbers and as text, and a
text column, a NATS subject or a JSON string holds one unchanged. The id of a top-level execution is
the clock and random low bits (`new_execution_id`, strictly increasing within a process); the id of a
child execution is a pure function of recorded data (`child_execution_id`), so replay reproduces it
(engine/net/fire.py keeps the children of an execution made before 2026-12 on their old hex ids).

Inside NoETL an id travels as `str` (its digits): the store's columns, the event log, the API's JSON and
the command line show those digits. Templates see it as an `int` (`template_value`), so
`{{ execution_id }}` is a number natively and renders as the same digits in SQL text. Ids made before
2026-12 (32 hex digits) stay readable; they are not numbers and templates see them as text.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2010, 1, 1, tzinfo=UTC)
EPOCH_MS = 1_262_304_000_000  # EPOCH in milliseconds since 1970
LOW_BITS = 22
LOW_MASK = (1 << LOW_BITS) - 1
MAX_ID = (1 << 63) - 1
MIN_ID = 10**18  # the smallest 19-digit number
DIGITS = 19
_MIN_MS = -(-MIN_ID >> LOW_BITS)  # the first millisecond whose ids have 19 digits (2017-07-22)
_MAX_MS = MAX_ID >> LOW_BITS  # the last millisecond below 2**63 (2079-09-07)
_MS = timedelta(milliseconds=1)


def os_random_bits(count: int) -> int:
    """`count` random bits from the OS (as secrets.randbits, without importing secrets, hashlib and
    random: `noetl run` makes an id on its fast path, noetl.fastrun)."""
    size = (count + 7) // 8
    return int.from_bytes(os.urandom(size), "big") >> (size * 8 - count)


def compose(unix_ms: int, low: int) -> int:
    """The id of millisecond `unix_ms` (since 1970) with `low` in its low 22 bits; a time outside
    2017-07-22 .. 2079-09-07 counts as the nearest end of that range."""
    ms = min(max(unix_ms - EPOCH_MS, _MIN_MS), _MAX_MS)
    return (ms << LOW_BITS) | (low & LOW_MASK)


def id_time(execution_id: str | int) -> datetime:
    """When the id was made (to the millisecond); ValueError for an id that is not a number."""
    value = as_int(execution_id)
    if value is None:
        raise ValueError(f"'{execution_id}' is not an execution id (the decimal digits of a positive "
                         "64-bit integer)")
    return EPOCH + (value >> LOW_BITS) * _MS


def as_int(execution_id: str | int) -> int | None:
    """The id as a number, or None when it is not one (an id made before 2026-12, or a made-up one)."""
    if isinstance(execution_id, int):
        return execution_id if 0 < execution_id <= MAX_ID else None
    text = execution_id
    if not (text.isascii() and text.isdigit()) or len(text) > DIGITS or text[0] == "0":
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def template_value(execution_id: str) -> int | str:
    """What templates see as `execution_id` and `job.*`: the number; an id that is not one, as given."""
    value = as_int(execution_id)
    return execution_id if value is None else value


class ExecutionIds:
    """Execution ids of one process, strictly increasing: the clock's millisecond and random low bits;
    an id that would not be above the last one (the same millisecond, or a clock that went back) is
    the last one plus one. Thread-safe."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns,
                 random_bits: Callable[[int], int] = os_random_bits) -> None:
        self._clock_ns = clock_ns
        self._random_bits = random_bits
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            candidate = compose(self._clock_ns() // 1_000_000, self._random_bits(LOW_BITS))
            if candidate <= self._last:
                candidate = self._last + 1
            if candidate > MAX_ID:
                raise OverflowError("execution ids are exhausted (they last until 2079-09-07)")
            self._last = candidate
            return candidate

    def forget(self) -> None:
        """Start again from the clock (a forked process must not repeat its parent's next ids)."""
        self._last = 0


_PROCESS_IDS = ExecutionIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PROCESS_IDS.forget)


def new_execution_id() -> str:
    """A new top-level execution's id: 19 digits, above every id this process made before."""
    return str(_PROCESS_IDS.next())


def child_execution_id(above: int, started_at: datetime, command_id: str) -> int:
    """The id of the child execution that command `command_id` starts (a `kind: playbook` step).

    A pure function of recorded data, so replay reproduces it: the millisecond of the event that caused
    the call (`started_at`), the low 22 bits of a hash of the command id, and at least `above` + 1 (the
    last id the parent gave a child, or the parent's own id), so that the children of one execution
    never share an id, even when a loop starts thousands of them in one millisecond."""
    when = started_at if started_at.tzinfo is not None else started_at.replace(tzinfo=UTC)
    unix_ms = (when - datetime(1970, 1, 1, tzinfo=UTC)) // _MS
    import hashlib  # only here: see os_random_bits

    low = int.from_bytes(hashlib.sha256(command_id.encode()).digest()[:8], "big")
    return max(compose(unix_ms, low), above + 1)
