"""A trigger's definition made usable: its schedule, its jitter and the checks that refuse a bad one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from control_plane.triggers.cron import CronSchedule
from control_plane.triggers.errors import TriggerSpecError
from control_plane.triggers.interval import IntervalSchedule, parse_duration
from control_plane.triggers.schedule import Schedule
from engine.dsl.triggers import TriggerSpec

MAX_JITTER_S = 3600.0


def schedule_of(kind: str, spec: dict[str, Any], anchor: datetime) -> Schedule | None:
    """The times a cron or interval trigger fires at (an interval counts from `anchor`); None for the
    kinds that fire on events."""
    if kind == "cron":
        return CronSchedule.parse(str(spec["cron"]), str(spec.get("tz") or "UTC"))
    if kind == "interval":
        return IntervalSchedule(parse_duration(spec["every"], "every"), anchor)
    return None


def jitter_of(spec: dict[str, Any]) -> float:
    value = spec.get("jitter")
    return 0.0 if value in (None, 0, "0") else parse_duration(value, "jitter")


def check(spec: TriggerSpec, where: str = "") -> None:
    """Refuse a definition that cannot fire (a bad cron, zone, interval or jitter): TriggerSpecError
    naming the key (`where` prefixes it, e.g. `triggers[0].`)."""
    data = spec.as_json()
    try:
        if spec.kind == "cron":
            CronSchedule.parse(str(spec.cron), spec.tz or "UTC")
        elif spec.kind == "interval":
            assert spec.every is not None
            IntervalSchedule(parse_duration(spec.every, "every"), datetime(2026, 1, 1, tzinfo=UTC))
        jitter = jitter_of(data)
    except TriggerSpecError as exc:
        raise TriggerSpecError(exc.message, where=f"{where}{exc.where or spec.kind}", fix=exc.fix) from None
    if jitter > MAX_JITTER_S:
        raise TriggerSpecError(f"jitter {spec.jitter} is longer than an hour", where=f"{where}jitter",
                               fix="use a jitter of at most 1h (a delay that spreads starts, not a schedule)")
    if jitter and spec.kind not in ("cron", "interval"):
        raise TriggerSpecError(f"jitter applies to cron and every triggers only (this one is {spec.kind})",
                               where=f"{where}jitter", fix="remove it")
