"""Triggers (docs/triggers.md): define, pause and delete them; decide their firings and start the runs.

Definitions come through the API, the CLI, MCP and the playbooks that declare them (registered with the
playbook, `declare`). Firings are decided by the pure rules of control_plane/triggers/firing.py under
the trigger's row lock (control_plane/store/triggers.py), each under an id that is a function of what
fired it, so a restart, a second server process or a redelivered message never starts a run twice.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from control_plane.errors import (
    ConflictError,
    ControlPlaneError,
    DatabaseUnavailableError,
    InvalidArgumentError,
    NotFoundError,
    UnauthorizedError,
)
from control_plane.store import Store
from control_plane.store.triggers import (
    Decision,
    FiringRecord,
    NewFiring,
    TriggerEvent,
    TriggerRecord,
)
from control_plane.triggers import definition
from control_plane.triggers.errors import TriggerSpecError
from control_plane.triggers.firing import admit, firing_id, plan_schedule, time_key
from control_plane.triggers.payload import decoded, render_payload
from engine.dsl.triggers import TriggerSpec
from engine.errors import EngineError
from engine.protocol.ids import new_execution_id

if TYPE_CHECKING:
    from control_plane.services.executions import ExecutionService
    from engine.bus.jetstream import Bus, Delivery
    from engine.dsl.model import Playbook

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-noetl-signature"  # `sha256=<hex HMAC-SHA256 of the body with the trigger's secret>`
DELIVERY_HEADERS = ("x-noetl-delivery", "x-github-delivery", "x-request-id")  # a redelivery's same id
UPSTREAM_LOOKBACK_S = 120.0  # ends read again this far back: a transaction that committed late
RECOVER_AFTER_S = 15.0  # a firing still pending this long after it was recorded is started again
_DECLARED = uuid.UUID("1e0f5a52-8c1c-4c55-b4a3-7f1f0f2b6c33")


@dataclass(frozen=True, slots=True)
class Created:
    trigger: TriggerRecord
    secret: str | None  # a webhook's HMAC key: only in this answer


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a webhook delivery or a message did."""

    firing_id: str
    status: str
    execution_id: str | None
    reason: str | None = None
    duplicate: bool = False  # the same delivery came before: nothing new was started


def declared_id(path: str, name: str) -> str:
    """A declared trigger's id: the same every time its playbook is registered."""
    return uuid.uuid5(_DECLARED, f"{path}|{name}").hex


def webhook_path(record: TriggerRecord) -> str | None:
    """Where a webhook trigger takes its deliveries (None for the other kinds)."""
    return f"/api/hooks/{record.trigger_id}" if record.kind == "webhook" else None


def signature_of(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class TriggerService:
    def __init__(self, store: Store, executions: ExecutionService | None = None, bus: Bus | None = None,
                 ) -> None:
        self.store = store
        self.executions = executions  # None: it can define triggers but not start runs
        self.bus = bus  # None: subject triggers are checked when a server reads them

    # ------------------------------------------------------------------ definitions
    async def create(self, path: str, spec: TriggerSpec, *, actor: str | None, source: str = "api",
                     trigger_id: str | None = None, replace: bool = False, where: str = "") -> Created:
        """Store a trigger of `path`'s playbook (which must be in the catalog)."""
        definition.check(spec, where)
        await self.store.catalog.get(path, spec.version)  # NotFoundError: register it first
        if spec.kind == "after":
            assert spec.after is not None
            if spec.after.path == path and spec.after.on in ("completed", "any"):
                log.info("trigger on %s starts it again after each run of itself", path)
        trigger_id = trigger_id or uuid.uuid4().hex
        secret = secrets.token_urlsafe(32) if spec.kind == "webhook" else None
        existing: TriggerRecord | None = None
        if replace:
            try:
                existing = await self.store.triggers.get(trigger_id)
            except NotFoundError:
                existing = None
            if existing is not None and existing.has_secret:
                secret = None  # a declared webhook keeps the key it was given first
        await self._bind_subject(trigger_id, spec, existing, where)
        record = await self.store.triggers.create(
            trigger_id=trigger_id, name=spec.name, path=path, version=spec.version, kind=spec.kind,
            spec=spec.as_json(), source=source, paused=spec.paused, created_by=actor,
            secret=secret.encode() if secret is not None else None, replace=replace)
        log.info("trigger %s (%s) of %s stored by %s", record.trigger_id, record.kind, path, actor or "-")
        return Created(record, secret)

    async def _bind_subject(self, trigger_id: str, spec: TriggerSpec, existing: TriggerRecord | None,
                            where: str) -> None:
        """A subject trigger's consumer made now, so a subject NATS cannot read is refused before anything
        is stored (without a bus, the runner makes it and logs why it cannot)."""
        if spec.kind != "subject" or self.bus is None:
            return
        assert spec.subject is not None
        others = [t.spec["subject"] for t in await self.store.triggers.list(kinds=["subject"])
                  if t.trigger_id != trigger_id]
        since = existing.created_at if existing is not None else datetime.now(UTC)
        try:
            await self.bus.check_trigger_subject(trigger_id, spec.subject, since=since, all_subjects=others)
        except EngineError as exc:
            raise InvalidArgumentError(exc.message, where=f"{where}subject", fix=exc.fix) from None

    async def check_declared(self, path: str, playbook: Playbook) -> None:
        """Before a registration stores anything: the subjects its declared triggers read can be read."""
        for one in definition.declared(playbook):
            if one.spec.kind == "subject":
                trigger_id = declared_id(path, one.name)
                try:
                    existing: TriggerRecord | None = await self.store.triggers.get(trigger_id)
                except NotFoundError:
                    existing = None
                await self._bind_subject(trigger_id, one.spec, existing, one.where)

    async def declare(self, path: str, playbook: Playbook, *, actor: str | None) -> builtins.list[Created]:
        """Register the triggers `playbook` declares, a checked one (definition.with_declared_checks:
        each can fire, no two share a name); those it declared before and no more are deleted."""
        created: builtins.list[Created] = []
        for one in definition.declared(playbook):
            named = one.spec.model_copy(update={"name": one.name})
            created.append(await self.create(path, named, actor=actor, source="playbook",
                                             trigger_id=declared_id(path, one.name), replace=True,
                                             where=one.where))
        gone = await self.store.triggers.delete_declared(path, [c.trigger.trigger_id for c in created])
        for trigger_id in gone:
            log.info("trigger %s of %s deleted: the playbook no longer declares it", trigger_id, path)
        return created

    async def get(self, trigger_id: str) -> TriggerRecord:
        return await self.store.triggers.get(trigger_id)

    async def list(self, *, path: str | None = None) -> builtins.list[TriggerRecord]:
        return await self.store.triggers.list(path=path)

    async def firings(self, trigger_id: str, *, limit: int = 20) -> builtins.list[FiringRecord]:
        await self.store.triggers.get(trigger_id)
        return await self.store.triggers.firings(trigger_id, limit=limit)

    async def events(self, trigger_id: str | None = None, *, limit: int = 100) -> builtins.list[TriggerEvent]:
        if trigger_id is not None:
            await self.store.triggers.get(trigger_id)
        return await self.store.triggers.events(trigger_id, limit=limit)

    async def set_paused(self, trigger_id: str, paused: bool, *, actor: str | None) -> TriggerRecord:
        return await self.store.triggers.set_paused(trigger_id, paused, actor)

    async def delete(self, trigger_id: str, *, actor: str | None) -> None:
        record = await self.store.triggers.get(trigger_id)
        await self.store.triggers.delete(trigger_id, actor)
        if record.kind == "subject" and self.bus is not None:
            await self.bus.drop_trigger_consumer(trigger_id, str(record.spec.get("subject")))

    def next_times(self, record: TriggerRecord, count: int = 3,
                   now: datetime | None = None) -> builtins.list[datetime]:
        """When a time trigger fires next (nothing for the others)."""
        schedule = definition.schedule_of(record.kind, record.spec, record.created_at)
        if schedule is None:
            return []
        found, at = [], max(now or datetime.now(UTC), record.cursor_at)
        for _ in range(count):
            at = schedule.next_after(at)
            found.append(at)
        return found

    def describe(self, record: TriggerRecord) -> dict[str, Any]:
        """The trigger as the API, the CLI and MCP show it (never its secret)."""
        return {"id": record.trigger_id, "name": record.name, "path": record.path, "version": record.version,
                "kind": record.kind, "spec": record.spec, "source": record.source, "paused": record.paused,
                "created_by": record.created_by, "created_at": record.created_at,
                "updated_at": record.updated_at, "next_at": [] if record.paused else self.next_times(record),
                "webhook_path": webhook_path(record)}

    @staticmethod
    def describe_firing(firing: FiringRecord) -> dict[str, Any]:
        return {"id": firing.firing_id, "scheduled_at": firing.scheduled_at, "status": firing.status,
                "reason": firing.reason, "execution_id": firing.execution_id}

    # ------------------------------------------------------------------ firing
    def _context(self, trigger: TriggerRecord, fid: str, scheduled_at: datetime) -> dict[str, Any]:
        return {"trigger": {"id": trigger.trigger_id, "name": trigger.name, "kind": trigger.kind,
                            "path": trigger.path},
                "firing": {"id": fid, "scheduled_at": scheduled_at.isoformat()}}

    def _firing(self, trigger: TriggerRecord, fid: str, scheduled_at: datetime, running: builtins.list[str],
                context: dict[str, Any], *, source_key: str | None = None, reason: str | None = None,
                body: dict[str, Any] | None = None) -> NewFiring:
        """One firing, admitted under the trigger's concurrency policy (a started one joins `running`)."""
        try:
            payload = render_payload(dict(trigger.spec.get("payload") or {}), context)
        except TriggerSpecError as exc:
            return NewFiring(fid, scheduled_at, "failed", reason=str(exc), source_key=source_key,
                             body=body or {})
        status, why = admit(str(trigger.spec.get("concurrency", "allow")), running)
        execution_id = new_execution_id() if status in ("pending", "queued") else None
        if status == "pending":
            running.append(execution_id or fid)
        return NewFiring(fid, scheduled_at, status, execution_id=execution_id, reason=why or reason,
                         source_key=source_key, payload=payload, body=body or {})

    async def tick_schedule(self, trigger_id: str, now: datetime) -> builtins.list[NewFiring]:
        """Decide a cron or interval trigger's due firings and start those to run; the firings stored
        now."""

        def decide(trigger: TriggerRecord, running: builtins.list[str]) -> Decision:
            schedule = definition.schedule_of(trigger.kind, trigger.spec, trigger.created_at)
            assert schedule is not None
            plan = plan_schedule(schedule, trigger_id=trigger.trigger_id, cursor=trigger.cursor_at, now=now,
                                 catchup=str(trigger.spec.get("catchup", "latest")),
                                 catchup_limit=int(trigger.spec.get("catchup_limit", 10)),
                                 jitter_s=definition.jitter_of(trigger.spec))
            firings: builtins.list[NewFiring] = []
            if plan.missed_before is not None:
                firings.append(NewFiring(
                    firing_id(trigger.trigger_id, "missed-before:" + time_key(plan.missed_before)),
                    plan.missed_before, "skipped",
                    reason="missed while NoETL was not running: firings before "
                           f"{plan.missed_before.isoformat()} "
                           "(more than one look decides) are not recorded one by one",
                    body={"summary": True}))
            for slot in plan.slots:
                context = self._context(trigger, slot.firing_id, slot.scheduled_at)
                if slot.action == "skip":
                    firings.append(NewFiring(slot.firing_id, slot.scheduled_at, "skipped",
                                             reason=slot.reason))
                else:
                    firings.append(self._firing(trigger, slot.firing_id, slot.scheduled_at, running, context,
                                                reason=slot.reason, body={"caught_up": slot.caught_up}))
            return Decision(firings, plan.cursor)

        stored = await self.store.triggers.decide(trigger_id, decide) or []
        await self._start_all(trigger_id, stored)
        return stored

    async def tick_after(self, trigger: TriggerRecord) -> builtins.list[NewFiring]:
        """Fire an `after` trigger for each run of its upstream playbook that ended as it asks."""
        ends = await self.store.triggers.upstream_ends(trigger, lookback_s=UPSTREAM_LOOKBACK_S)
        if not ends:
            return []
        upstream: dict[str, dict[str, Any]] = {}
        for end in ends:
            result: Any = None
            if self.executions is not None:
                try:
                    result = (await self.executions.summary(end.execution_id)).get("result")
                except NotFoundError:
                    result = None
            upstream[end.execution_id] = {"execution_id": end.execution_id,
                                          "path": (trigger.spec.get("after") or {}).get("path"),
                                          "status": end.status, "result": result}

        def decide(locked: TriggerRecord, running: builtins.list[str]) -> Decision:
            firings = []
            for end in ends:
                fid = firing_id(locked.trigger_id, f"execution:{end.execution_id}")
                context = {**self._context(locked, fid, end.ended_at), "upstream": upstream[end.execution_id]}
                firings.append(self._firing(locked, fid, end.ended_at, running, context,
                                            source_key=end.execution_id,
                                            body={"upstream_execution_id": end.execution_id}))
            return Decision(firings, max(end.ended_at for end in ends))

        stored = await self.store.triggers.decide(trigger.trigger_id, decide)
        if stored:
            await self._start_all(trigger.trigger_id, stored)
        return stored or []

    async def on_message(self, trigger: TriggerRecord, delivery: Delivery, stream: str) -> Delivered | None:
        """Fire a subject trigger for one message (its id: the publisher's Nats-Msg-Id, else its place in
        the stream); None when another process holds the trigger (the message comes again)."""
        key = f"msg:{delivery.msg_id}" if delivery.msg_id else f"seq:{stream}:{delivery.stream_seq}"
        message = {"subject": delivery.subject, "data": decoded(delivery.data), "id": delivery.msg_id or key,
                   "headers": {k: v for k, v in delivery.headers.items()
                               if not k.lower().startswith("nats-")}}
        return await self._fire_event(trigger, key, "message", message)

    async def deliver_webhook(self, trigger_id: str, body: bytes, headers: dict[str, str]) -> Delivered:
        """A webhook delivery: its signature checked (UnauthorizedError, nothing started, when it is
        missing or wrong), then fired once per delivery id."""
        try:
            trigger = await self.store.triggers.get(trigger_id)
        except NotFoundError:
            raise NotFoundError(f"no webhook trigger '{trigger_id}'", where="hooks",
                                fix="check the URL `noetl trigger create --webhook` printed") from None
        secret = await self.store.triggers.secret(trigger_id) if trigger.kind == "webhook" else None
        if secret is None:
            raise NotFoundError(f"no webhook trigger '{trigger_id}'", where="hooks",
                                fix="check the URL `noetl trigger create --webhook` printed")
        lower = {k.lower(): v for k, v in headers.items()}
        given = lower.get(SIGNATURE_HEADER, "")
        if not given or not hmac.compare_digest(given.strip(), signature_of(secret, body)):
            log.warning("webhook %s: a delivery with %s signature was refused", trigger_id,
                        "a wrong" if given else "no")
            raise UnauthorizedError(
                "the webhook delivery's signature is " + ("wrong" if given else "missing"),
                where=f"header {SIGNATURE_HEADER}",
                fix="send X-NoETL-Signature: sha256=<hex HMAC-SHA256 of the exact body, keyed with the "
                    "trigger's secret>")
        if trigger.paused:
            await self.store.triggers.record_event(trigger_id, "trigger.skipped", "the trigger is paused",
                                                   {"delivery": _delivery_id(lower)})
            raise ConflictError(f"trigger '{trigger_id}' is paused", where="hooks",
                                fix=f"resume it: noetl trigger resume {trigger_id}")
        delivery = _delivery_id(lower)
        key = f"delivery:{delivery}" if delivery else f"request:{uuid.uuid4().hex}"
        request = {"body": decoded(body), "delivery": delivery,
                   "headers": {k: v for k, v in lower.items() if k not in (SIGNATURE_HEADER, "authorization")
                               and (k.startswith("x-") or k in ("content-type", "user-agent"))}}
        done = await self._fire_event(trigger, key, "request", request)
        if done is None:
            raise DatabaseUnavailableError("another server process is deciding this trigger's firings",
                                           where="hooks", fix="send the delivery again")
        return done

    async def _fire_event(self, trigger: TriggerRecord, key: str, name: str,
                          value: dict[str, Any]) -> Delivered | None:
        fid = firing_id(trigger.trigger_id, key)
        at = datetime.now(UTC)

        def decide(locked: TriggerRecord, running: builtins.list[str]) -> Decision:
            context = {**self._context(locked, fid, at), name: value}
            return Decision([self._firing(locked, fid, at, running, context, source_key=key)])

        stored = await self.store.triggers.decide(trigger.trigger_id, decide)
        if stored is None:
            return None
        if not stored:  # decided before: tell what became of it
            previous = await self.store.triggers.firing(fid)
            return Delivered(fid, previous.status if previous else "started",
                             previous.execution_id if previous else None, duplicate=True)
        await self._start_all(trigger.trigger_id, stored)
        firing = stored[0]
        status = "started" if firing.status == "pending" else firing.status
        return Delivered(fid, status, firing.execution_id, firing.reason)

    async def _start_all(self, trigger_id: str, firings: Sequence[NewFiring | FiringRecord]) -> None:
        pending = [f for f in firings if f.status == "pending"]
        if not pending:
            return
        trigger = await self.store.triggers.get(trigger_id)
        for firing in pending:
            await self.start(trigger, firing)

    async def start(self, trigger: TriggerRecord, firing: NewFiring | FiringRecord) -> None:
        """Start a pending firing's execution under the id it was given (again after a crash: the same
        run); a playbook that is gone fails the firing, an outage leaves it pending for the next look."""
        if self.executions is None or firing.execution_id is None:
            return
        origin = {"trigger": {"id": trigger.trigger_id, "name": trigger.name, "kind": trigger.kind,
                              "firing_id": firing.firing_id, "scheduled_at": firing.scheduled_at.isoformat()}}
        try:
            await self.executions.start(trigger.path, version=trigger.version, payload=firing.payload or {},
                                        execution_id=firing.execution_id, origin=origin)
        except NotFoundError as exc:
            await self.store.triggers.mark(firing, trigger.trigger_id, "failed",
                                           f"{exc.message}; register the playbook or delete the trigger")
            log.warning("trigger %s: firing %s failed: %s", trigger.trigger_id, firing.firing_id, exc.message)
            return
        except (ControlPlaneError, EngineError) as exc:
            log.warning("trigger %s: firing %s not started yet (%s); it is tried again", trigger.trigger_id,
                        firing.firing_id, exc)
            return
        await self.store.triggers.mark(firing, trigger.trigger_id, "started")
        log.info("trigger %s fired: execution %s of %s", trigger.trigger_id, firing.execution_id,
                 trigger.path)

    async def promote_queued(self) -> int:
        """Start the oldest queued firing of each trigger whose previous run ended; how many started."""
        started = 0
        for trigger_id in await self.store.triggers.queued_triggers():
            firing = await self.store.triggers.promote_queued(trigger_id)
            if firing is not None:
                await self.start(await self.store.triggers.get(trigger_id), firing)
                started += 1
        return started

    async def recover(self, older_than_s: float = RECOVER_AFTER_S) -> int:
        """Start again the firings a crash left pending (the same execution ids: started once)."""
        found = await self.store.triggers.pending(older_than_s=older_than_s)
        for firing, trigger in found:
            await self.start(trigger, firing)
        return len(found)


def _delivery_id(headers: dict[str, str]) -> str | None:
    for name in DELIVERY_HEADERS:
        value = headers.get(name)
        if value and value.strip():
            return value.strip()[:200]
    return None

