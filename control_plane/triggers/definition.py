"""A trigger's definition made usable: its schedule, its jitter and the checks that refuse a bad one."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from control_plane.triggers.cron import CronSchedule
from control_plane.triggers.errors import TriggerSpecError
from control_plane.triggers.firing import due_at
from control_plane.triggers.interval import IntervalSchedule, parse_duration
from control_plane.triggers.schedule import Schedule
from engine.dsl.diagnostics import Issue
from engine.dsl.triggers import TriggerSpec

if TYPE_CHECKING:
    from engine.dsl.model import Playbook
    from engine.net.validate import Validation

MAX_JITTER_S = 3600.0


def schedule_of(kind: str, spec: dict[str, Any], anchor: datetime) -> Schedule | None:
    """The times a cron or interval trigger fires at (an interval counts from `anchor`); None for the
    kinds that fire on events."""
    if kind == "cron":
        return _cron(str(spec["cron"]), str(spec.get("tz") or "UTC"))
    if kind == "interval":
        return IntervalSchedule(parse_duration(spec["every"], "every"), anchor)
    return None


@functools.lru_cache(maxsize=1024)
def _cron(expression: str, tz: str) -> CronSchedule:
    """Parsed once per process: the runner asks every second whether each trigger is due."""
    return CronSchedule.parse(expression, tz)


def next_due(kind: str, spec: dict[str, Any], anchor: datetime, trigger_id: str,
             cursor: datetime) -> datetime | None:
    """When a time trigger's first firing after `cursor` is due (its jitter included); None for the
    kinds that fire on events."""
    schedule = schedule_of(kind, spec, anchor)
    if schedule is None:
        return None
    return due_at(trigger_id, schedule.next_after(cursor), jitter_of(spec))


def jitter_of(spec: dict[str, Any]) -> float:
    value = spec.get("jitter")
    return 0.0 if value in (None, 0, "0") else parse_duration(value, "jitter")


def summary(kind: str, spec: dict[str, Any], webhook_path: str | None = None) -> str:
    """What starts a run, in one line: `cron 30 2 * * * (Europe/Paris)`, `every 5m`, `after etl/load
    (completed)`, … (the CLI's lists and the console's pages)."""
    if kind == "cron":
        return f"cron {spec.get('cron')} ({spec.get('tz') or 'UTC'})"
    if kind == "interval":
        return f"every {spec.get('every')}"
    if kind == "after":
        after = spec.get("after") or {}
        return f"after {after.get('path')} ({after.get('on') or 'completed'})"
    if kind == "subject":
        return f"each message on {spec.get('subject')}"
    if kind == "webhook":
        return f"each signed delivery to {webhook_path}" if webhook_path else "webhook"
    return kind


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


@dataclass(frozen=True, slots=True)
class Declared:
    """A trigger a playbook declares, where it stands and the name it is known by."""

    place: tuple[str | int, ...]  # ("triggers", 0) or ("metadata", "triggers", 0)
    name: str  # its `name`, else `<kind>-<n>` by its place among all the declared ones, from 1
    spec: TriggerSpec

    @property
    def where(self) -> str:
        """The place as errors name it: `triggers[0].`, `metadata.triggers[1].`."""
        *keys, index = self.place
        return f"{'.'.join(str(k) for k in keys)}[{index}]."


def declared(playbook: Playbook) -> list[Declared]:
    """The root's `triggers:` then `metadata.triggers`, each with its place and name."""
    places = [("triggers", i) for i in range(len(playbook.triggers))] + \
        [("metadata", "triggers", i) for i in range(len(playbook.metadata.triggers))]
    return [Declared(place, spec.name or f"{spec.kind}-{index + 1}", spec)
            for index, (place, spec) in enumerate(zip(places, playbook.declared_triggers, strict=True))]


def declared_issues(playbook: Playbook) -> list[Issue]:
    """The problems of the triggers a playbook declares that its schema cannot see (a cron, a zone, an
    interval, a jitter; a version, which a declared trigger cannot pin; two with one name), each at its
    key."""
    issues: list[Issue] = []
    names: set[str] = set()
    for one in declared(playbook):
        place, spec = one.place, one.spec
        try:
            check(spec)
        except TriggerSpecError as exc:
            where = exc.where or spec.kind
            key = where.split()[0].split(".")[0]  # `cron field 'minute'` is at the key `cron`
            message = exc.message if where == key else f"{where[len(key):].strip()}: {exc.message}"
            issues.append(Issue((*place, key), f"{message} ({exc.fix})" if exc.fix else message,
                                "invalid_trigger"))
        if spec.version is not None:
            issues.append(Issue((*place, "version"), "a trigger declared in a playbook starts its newest "
                                "version (remove `version`)", "invalid_trigger"))
        if one.name in names:
            issues.append(Issue((*place, "name") if spec.name else place, f"two triggers are named "
                                f"'{one.name}' (give each trigger of the playbook a name of its own)",
                                "invalid_trigger"))
        names.add(one.name)
    return issues


def with_declared_checks(result: Validation) -> Validation:
    """`result` with the declared triggers' problems added (in place) when the playbook is otherwise
    valid: what `noetl validate` and registration report."""
    playbook = result.playbook
    if playbook is None:
        return result
    result.diagnostics.extend(result.loaded.locate(issue) for issue in declared_issues(playbook))
    result.diagnostics.sort(key=lambda d: (d.line, d.column, d.severity, d.message))
    return result
