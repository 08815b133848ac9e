"""Triggers, their firings and the trigger event log at rest (migration 0011; docs/triggers.md).

Every firing is decided under the trigger's row lock (`decide`): the lock serializes the server
processes that look at one trigger, and the firing's deterministic id (its primary key) makes a second
decision of the same firing a no-op, so no firing is recorded, or started, twice.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.db import Database
from control_plane.store.secret_key import SecretKey

log = logging.getLogger(__name__)

_COLUMNS = ("trigger_id, name, path, version, kind, spec, source, paused, cursor_at, active_since, "
            "created_by, created_at, updated_at, secret_ciphertext IS NOT NULL AS has_secret")
_FIRING_COLUMNS = ("f.firing_id, f.trigger_id, f.scheduled_at, f.status, f.reason, f.execution_id, "
                   "f.source_key, f.payload, f.created_at, f.updated_at")
# a firing counts as running while its execution has not ended (or it is not started yet)
_RUNNING = ("SELECT f.firing_id, f.execution_id FROM trigger_firings f "
            "LEFT JOIN executions e ON e.execution_id = f.execution_id WHERE f.trigger_id = %s AND "
            "(f.status = 'pending' OR (f.status = 'started' AND "
            "(e.execution_id IS NULL OR e.ended_at IS NULL)))")


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    trigger_id: str
    name: str | None
    path: str
    version: int | None
    kind: str
    spec: dict[str, Any]
    source: str
    paused: bool
    cursor_at: datetime
    active_since: datetime
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    has_secret: bool


@dataclass(frozen=True, slots=True)
class FiringRecord:
    firing_id: str
    trigger_id: str
    scheduled_at: datetime
    status: str
    reason: str | None
    execution_id: str | None
    source_key: str | None
    payload: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewFiring:
    """A firing as decided: `status` is pending (start it), queued, skipped or failed."""

    firing_id: str
    scheduled_at: datetime
    status: str
    execution_id: str | None = None
    reason: str | None = None
    source_key: str | None = None
    payload: dict[str, Any] | None = None
    body: dict[str, Any] = field(default_factory=dict)  # more for the event (e.g. the missed range)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a decider returns for one locked trigger: the firings to record and the cursor after them."""

    firings: Sequence[NewFiring]
    cursor_at: datetime | None = None  # None: unchanged


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    seq: int
    trigger_id: str
    firing_id: str | None
    type: str
    reason: str | None
    execution_id: str | None
    occurred_at: datetime
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UpstreamEnd:
    """An execution of an `after` trigger's playbook that ended."""

    execution_id: str
    status: str
    ended_at: datetime


_EVENT_OF_STATUS = {"pending": "trigger.fired", "queued": "trigger.queued", "skipped": "trigger.skipped",
                    "failed": "trigger.failed", "started": "trigger.started"}


def _record(row: DictRow) -> TriggerRecord:
    return TriggerRecord(**row)


def _firing(row: DictRow) -> FiringRecord:
    return FiringRecord(**row)


async def _append_event(conn: AsyncConnection[DictRow], trigger_id: str, firing_id: str | None, type_: str,
                        reason: str | None, execution_id: str | None, body: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO trigger_events (trigger_id, firing_id, type, reason, execution_id, body) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (trigger_id, firing_id, type_, reason, execution_id, json.dumps(body, default=str)))


class TriggerStore:
    def __init__(self, db: Database, key: SecretKey) -> None:
        self._db = db
        self._key = key

    # ------------------------------------------------------------------ definitions
    async def create(self, *, trigger_id: str, name: str | None, path: str, version: int | None, kind: str,
                     spec: dict[str, Any], source: str, paused: bool, created_by: str | None,
                     secret: bytes | None = None, replace: bool = False) -> TriggerRecord:
        """Store a trigger; `replace` (a playbook's declared trigger, registered again) updates its
        definition and keeps its cursor, its secret and whether it is paused."""
        sealed: tuple[bytes, bytes] | tuple[None, None] = \
            self._key.seal(trigger_id, secret) if secret is not None else (None, None)
        # a replaced trigger keeps its secret unless it is given one (a declared trigger become a webhook)
        conflict = ("ON CONFLICT (trigger_id) DO UPDATE SET name = EXCLUDED.name, path = EXCLUDED.path, "
                    "version = EXCLUDED.version, kind = EXCLUDED.kind, spec = EXCLUDED.spec, "
                    "secret_key_id = coalesce(EXCLUDED.secret_key_id, triggers.secret_key_id), "
                    "secret_nonce = coalesce(EXCLUDED.secret_nonce, triggers.secret_nonce), "
                    "secret_ciphertext = coalesce(EXCLUDED.secret_ciphertext, triggers.secret_ciphertext), "
                    "updated_at = clock_timestamp() " if replace else "ON CONFLICT (trigger_id) DO NOTHING ")
        row = await self._db.fetch_one(
            "INSERT INTO triggers (trigger_id, name, path, version, kind, spec, source, paused, cursor_at, "
            "created_by, secret_key_id, secret_nonce, secret_ciphertext) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "%s, clock_timestamp(), %s, %s, %s, %s) " + conflict + f"RETURNING {_COLUMNS}",
            (trigger_id, name, path, version, kind, json.dumps(spec), source, paused, created_by,
             self._key.key_id if secret is not None else None, sealed[0], sealed[1]))
        if row is None:
            raise ConflictError(f"trigger '{trigger_id}' exists already", where="triggers",
                                fix="create it without an id, or delete the other one first")
        return _record(row)

    async def secret(self, trigger_id: str) -> bytes | None:
        """A webhook's HMAC key, opened; None when the trigger has none."""
        row = await self._db.fetch_one(
            "SELECT secret_key_id, secret_nonce, secret_ciphertext FROM triggers WHERE trigger_id = %s",
            (trigger_id,))
        if row is None or row["secret_ciphertext"] is None:
            return None
        return self._key.open(trigger_id, bytes(row["secret_nonce"]), bytes(row["secret_ciphertext"]),
                              stored_key_id=row["secret_key_id"])

    async def get(self, trigger_id: str) -> TriggerRecord:
        row = await self._db.fetch_one(f"SELECT {_COLUMNS} FROM triggers WHERE trigger_id = %s",
                                       (trigger_id,))
        if row is None:
            raise NotFoundError(f"trigger '{trigger_id}' is not stored", where="triggers",
                                fix="list the triggers with `noetl trigger list`")
        return _record(row)

    async def list(self, *, path: str | None = None, kinds: Sequence[str] | None = None,
                   active: bool | None = None, source: str | None = None) -> builtins.list[TriggerRecord]:
        """By path, then creation; `active`: only the unpaused (True) or the paused (False)."""
        where: builtins.list[str] = ["TRUE"]
        params: builtins.list[Any] = []
        if path is not None:
            where.append("path = %s")
            params.append(path)
        if kinds is not None:
            where.append("kind = ANY(%s)")
            params.append(list(kinds))
        if active is not None:
            where.append("paused = %s")
            params.append(not active)
        if source is not None:
            where.append("source = %s")
            params.append(source)
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM triggers WHERE {' AND '.join(where)} "
            "ORDER BY path, created_at, trigger_id",
            params)
        return [_record(r) for r in rows]

    async def set_paused(self, trigger_id: str, paused: bool, actor: str | None) -> TriggerRecord:
        """Pause or resume. Resuming a time trigger moves its cursor to now: the time it was paused is not
        caught up (a paused trigger is one a person stopped); an `after` trigger fires for the runs that
        end after it was resumed."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE triggers SET paused = %s, updated_at = clock_timestamp(), cursor_at = CASE "
                "WHEN NOT %s AND paused AND kind IN ('cron', 'interval') THEN clock_timestamp() "
                "ELSE cursor_at END, active_since = CASE WHEN NOT %s AND paused THEN clock_timestamp() "
                f"ELSE active_since END WHERE trigger_id = %s RETURNING {_COLUMNS}",
                (paused, paused, paused, trigger_id))
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"trigger '{trigger_id}' is not stored", where="triggers",
                                    fix="list the triggers with `noetl trigger list`")
            await _append_event(conn, trigger_id, None, "trigger.paused" if paused else "trigger.resumed",
                                None, None, {"actor": actor} if actor else {})
        return _record(row)

    async def delete(self, trigger_id: str, actor: str | None) -> None:
        async with self._db.transaction() as conn:
            cur = await conn.execute("DELETE FROM triggers WHERE trigger_id = %s", (trigger_id,))
            if cur.rowcount == 0:
                raise NotFoundError(f"trigger '{trigger_id}' is not stored", where="triggers",
                                    fix="list the triggers with `noetl trigger list`")
            await _append_event(conn, trigger_id, None, "trigger.deleted", None, None,
                                {"actor": actor} if actor else {})

    async def delete_declared(self, path: str, keep: Sequence[str]) -> builtins.list[str]:
        """Delete the triggers `path`'s playbook declared before and declares no more; their ids."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM triggers WHERE path = %s AND source = 'playbook' AND NOT (trigger_id = ANY(%s)) "
                "RETURNING trigger_id", (path, list(keep)))
            gone = [r["trigger_id"] for r in await cur.fetchall()]
            for trigger_id in gone:
                await _append_event(conn, trigger_id, None, "trigger.deleted",
                                    "the playbook no longer declares it", None, {})
        return gone

    # ------------------------------------------------------------------ firing
    async def decide(self, trigger_id: str,
                     decider: Callable[[TriggerRecord, builtins.list[str]], Decision],
                     ) -> builtins.list[NewFiring] | None:
        """Under the trigger's row lock: `decider(trigger, running execution ids)` says which firings to
        record; each one new is stored with its event, and the cursor moves. Returns the firings stored
        now (those already stored are left as they are); None when another process holds the trigger, or
        it is paused or gone."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM triggers WHERE trigger_id = %s AND NOT paused "
                "FOR UPDATE SKIP LOCKED",
                (trigger_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            trigger = _record(row)
            cur = await conn.execute(_RUNNING, (trigger_id,))
            running = [r["execution_id"] or r["firing_id"] for r in await cur.fetchall()]
            decision = decider(trigger, running)
            stored: builtins.list[NewFiring] = []
            for firing in decision.firings:
                cur = await conn.execute(
                    "INSERT INTO trigger_firings (firing_id, trigger_id, scheduled_at, status, reason, "
                    "execution_id, source_key, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (firing_id) DO NOTHING RETURNING firing_id",
                    (firing.firing_id, trigger_id, firing.scheduled_at, firing.status, firing.reason,
                     firing.execution_id, firing.source_key,
                     json.dumps(firing.payload, default=str) if firing.payload is not None else None))
                if await cur.fetchone() is None:
                    continue
                stored.append(firing)
                await _append_event(conn, trigger_id, firing.firing_id, _EVENT_OF_STATUS[firing.status],
                                    firing.reason, firing.execution_id,
                                    {"scheduled_at": firing.scheduled_at.isoformat(), **firing.body})
            if decision.cursor_at is not None:
                await conn.execute(
                    "UPDATE triggers SET cursor_at = GREATEST(cursor_at, %s) WHERE trigger_id = %s",
                    (decision.cursor_at, trigger_id))
        return stored

    async def promote_queued(self, trigger_id: str) -> FiringRecord | None:
        """The oldest queued firing of the trigger made pending (to be started), when none of its firings
        is running; None otherwise."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM triggers WHERE trigger_id = %s FOR UPDATE SKIP LOCKED", (trigger_id,))
            if await cur.fetchone() is None:
                return None
            cur = await conn.execute(_RUNNING + " LIMIT 1", (trigger_id,))
            if await cur.fetchone() is not None:
                return None
            cur = await conn.execute(
                "UPDATE trigger_firings f SET status = 'pending', updated_at = clock_timestamp() "
                "WHERE firing_id = (SELECT firing_id FROM trigger_firings WHERE trigger_id = %s AND "
                "status = 'queued' ORDER BY scheduled_at, created_at LIMIT 1) "
                f"RETURNING {_FIRING_COLUMNS}", (trigger_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            await _append_event(conn, trigger_id, row["firing_id"], "trigger.dequeued",
                                "the previous run ended", row["execution_id"], {})
        return _firing(row)

    async def queued_triggers(self) -> builtins.list[str]:
        rows = await self._db.fetch_all(
            "SELECT DISTINCT f.trigger_id FROM trigger_firings f JOIN triggers t USING (trigger_id) "
            "WHERE f.status = 'queued' AND NOT t.paused")
        return [r["trigger_id"] for r in rows]

    async def pending(self, *, older_than_s: float) -> builtins.list[tuple[FiringRecord, TriggerRecord]]:
        """Firings recorded to be started that are still not marked started (a crash in between)."""
        rows = await self._db.fetch_all(
            f"SELECT {_FIRING_COLUMNS} FROM trigger_firings f WHERE f.status = 'pending' "
            "AND f.updated_at < clock_timestamp() - make_interval(secs => %s) "
            "ORDER BY f.created_at LIMIT 100",
            (older_than_s,))
        found = []
        for row in rows:
            try:
                found.append((_firing(row), await self.get(row["trigger_id"])))
            except NotFoundError:
                continue
        return found

    async def mark(self, firing: FiringRecord | NewFiring, trigger_id: str, status: str,
                   reason: str | None = None) -> bool:
        """Move a pending firing on (started or failed) with its event; False when it had moved already."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE trigger_firings SET status = %s, reason = coalesce(%s, reason), "
                "updated_at = clock_timestamp() WHERE firing_id = %s AND status = 'pending'",
                (status, reason, firing.firing_id))
            if cur.rowcount == 0:
                return False
            await _append_event(conn, trigger_id, firing.firing_id, _EVENT_OF_STATUS[status], reason,
                                firing.execution_id, {})
        return True

    async def record_event(self, trigger_id: str, type_: str, reason: str | None,
                           body: dict[str, Any] | None = None) -> None:
        """An event that is not a firing's (a refused webhook delivery, a message that could not be read)."""
        async with self._db.transaction() as conn:
            await _append_event(conn, trigger_id, None, type_, reason, None, body or {})

    async def upstream_ends(self, trigger: TriggerRecord, *, lookback_s: float,
                            limit: int = 100) -> builtins.list[UpstreamEnd]:
        """Executions of the `after` trigger's playbook that ended in a matching status since its cursor
        (less `lookback_s`: a transaction that committed late) and since it was created or resumed, and have
        no firing of it yet."""
        after = trigger.spec.get("after") or {}
        on = after.get("on", "completed")
        statuses = ["completed", "failed"] if on == "any" else [on]
        rows = await self._db.fetch_all(
            "SELECT e.execution_id, e.status, e.ended_at FROM executions e WHERE e.playbook_path = %s "
            "AND e.ended_at IS NOT NULL AND e.status = ANY(%s) "
            "AND e.ended_at > %s - make_interval(secs => %s) AND e.ended_at > %s "
            "AND NOT EXISTS (SELECT 1 FROM trigger_firings f "
            "WHERE f.trigger_id = %s AND f.source_key = e.execution_id) ORDER BY e.ended_at LIMIT %s",
            (after.get("path"), statuses, trigger.cursor_at, lookback_s, trigger.active_since,
             trigger.trigger_id, limit))
        return [UpstreamEnd(**r) for r in rows]

    # ------------------------------------------------------------------ reading
    async def firings(self, trigger_id: str, *, limit: int = 20) -> builtins.list[FiringRecord]:
        """The newest firings first."""
        rows = await self._db.fetch_all(
            f"SELECT {_FIRING_COLUMNS} FROM trigger_firings f WHERE f.trigger_id = %s "
            "ORDER BY f.scheduled_at DESC, f.created_at DESC LIMIT %s", (trigger_id, limit))
        return [_firing(r) for r in rows]

    async def firing(self, firing_id: str) -> FiringRecord | None:
        row = await self._db.fetch_one(
            f"SELECT {_FIRING_COLUMNS} FROM trigger_firings f WHERE f.firing_id = %s", (firing_id,))
        return _firing(row) if row is not None else None

    async def events(self, trigger_id: str | None = None, *, limit: int = 100,
                     types: Sequence[str] | None = None) -> builtins.list[TriggerEvent]:
        """The newest first."""
        where: builtins.list[str] = ["TRUE"]
        params: builtins.list[Any] = []
        if trigger_id is not None:
            where.append("trigger_id = %s")
            params.append(trigger_id)
        if types is not None:
            where.append("type = ANY(%s)")
            params.append(list(types))
        rows = await self._db.fetch_all(
            "SELECT seq, trigger_id, firing_id, type, reason, execution_id, occurred_at, body "
            "FROM trigger_events "
            f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %s", [*params, limit])
        return [TriggerEvent(**r) for r in rows]

    async def outcomes(self, *, since: datetime, until: datetime,
                       path: str | None = None) -> builtins.list[dict[str, Any]]:
        """How many firings of each trigger (of `path`) started, were skipped, queued or failed in the
        window, by reason: the insights' rows."""
        rows = await self._db.fetch_all(
            "SELECT e.trigger_id, t.path, t.kind, t.name, e.type, e.reason, count(*) AS count "
            "FROM trigger_events e LEFT JOIN triggers t USING (trigger_id) "
            "WHERE e.occurred_at >= %s AND e.occurred_at < %s AND e.type = ANY(%s) "
            "AND (%s::text IS NULL OR t.path = %s) "
            "GROUP BY e.trigger_id, t.path, t.kind, t.name, e.type, e.reason",
            (since, until, ["trigger.started", "trigger.skipped", "trigger.queued", "trigger.failed"],
             path, path))
        return [dict(r) for r in rows]
