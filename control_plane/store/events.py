"""The append-only event log in Postgres: implements engine.runtime.ports.EventLog.

Order: each execution row carries `last_seq`. `append` runs one transaction: lock the rows of the
executions it touches (`SELECT ... FOR UPDATE`, in id order so batches touching several executions
cannot deadlock); insert the whole batch in one statement that skips stored keys and numbers the rest
`last_seq + 1, + 2, ...` in batch order; advance the counters. Appends to one execution are serialized
by the row lock, so seq is 1, 2, 3, ... without gaps. Deduplication: `idempotency_key` is UNIQUE and
the insert is `ON CONFLICT DO NOTHING`; should a concurrent writer of another execution store one of
the batch's keys after it was numbered, the transaction is rolled back and tried again, so a skipped
event never leaves a gap.

Live streaming: every append that stores events sends `NOTIFY noetl_events, '{"execution_id": ..,
"seq": ..}'` on commit (LISTEN on a dedicated connection), and `latest_seq` is cheap enough to poll."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, LiteralString

from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.db import Database
from control_plane.store.executions import ExecutionStore
from engine.protocol.events import TERMINAL_EVENTS, Event

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "noetl_events"
# jsonb cannot hold U+0000; an escaped NUL (an odd run of backslashes before u0000) becomes U+FFFD
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")

# one statement for the whole batch: skip stored keys, number the rest per execution in batch order
_INSERT: LiteralString = """
WITH batch AS (
    SELECT * FROM unnest(%(ord)b::int[], %(execution_id)b::text[], %(event_id)b::text[], %(key)b::text[],
                         %(type)b::text[], %(step)b::text[], %(loop_index)b::int[], %(derived)b::bool[],
                         %(occurred_at)b::timestamptz[], %(body)b::jsonb[])
        AS b(ord, execution_id, event_id, idempotency_key, type, step, loop_index, derived, occurred_at, body)
), numbered AS (
    SELECT b.*, x.last_seq + row_number() OVER (PARTITION BY b.execution_id ORDER BY b.ord) AS seq
    FROM batch b JOIN executions x USING (execution_id)
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.idempotency_key = b.idempotency_key)
)
INSERT INTO events (execution_id, seq, event_id, idempotency_key, type, step, loop_index, derived,
                    occurred_at, body)
SELECT execution_id, seq, event_id, idempotency_key, type, step, loop_index, derived, occurred_at, body
FROM numbered ORDER BY ord
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING idempotency_key, seq"""

_ADVANCE: LiteralString = """
UPDATE executions x SET last_seq = u.last_seq, updated_at = clock_timestamp(),
    ended_at = CASE WHEN x.ended_at IS NULL AND u.ended THEN clock_timestamp() ELSE x.ended_at END
FROM unnest(%b::text[], %b::bigint[], %b::bool[]) AS u(execution_id, last_seq, ended)
WHERE x.execution_id = u.execution_id
RETURNING pg_notify(%s, json_build_object('execution_id', x.execution_id, 'seq', u.last_seq)::text)"""
_ATTEMPTS = 5


class _Raced(Exception):
    """A concurrent transaction stored one of the batch's keys after this one looked: start again."""


def event_body(event: Event) -> str:
    """The event as the JSON stored in `body` (without seq, which has its own column)."""
    text = event.model_dump_json(by_alias=True, exclude={"seq"})
    if "\\u0000" in text:
        log.warning("event %s of execution %s contains NUL characters; stored as U+FFFD",
                    event.event_id, event.execution_id)
        text = _JSON_NUL.sub(r"\1\\ufffd", text)
    return text


class EventStore:
    """engine.runtime.ports.EventLog over Postgres, plus `latest_seq` for live streaming."""

    def __init__(self, db: Database, executions: ExecutionStore | None = None) -> None:
        self._db = db
        self.executions = executions or ExecutionStore(db)

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Store the events in order, in one transaction; return those stored now, with their seq.

        An event whose idempotency key is already stored (earlier, or earlier in this batch) is skipped.
        Every execution must exist (`create_execution`), else NotFoundError and nothing is stored.
        """
        batch: dict[str, Event] = {}
        for event in events:
            batch.setdefault(event.idempotency_key, event)  # a duplicate within the batch: first wins
        if not batch:
            return []
        unique = list(batch.values())
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                stored = await self._append_once(unique)
            except _Raced:
                log.debug("append raced a concurrent writer of the same key (attempt %d)", attempt)
                continue
            if len(stored) < len(events):
                log.debug("append: %d of %d events were duplicates", len(events) - len(stored), len(events))
            return stored
        raise ConflictError(f"{_ATTEMPTS} attempts to append raced concurrent writers of the same "
                            "idempotency keys", where="events.append",
                            fix="idempotency keys must be unique per event; include the execution id")

    async def _append_once(self, events: list[Event]) -> list[Event]:
        execution_ids = sorted({e.execution_id for e in events})
        async with self._db.transaction() as conn:
            # lock the counters in id order (no deadlock between batches touching several executions)
            cur = await conn.execute(
                "SELECT execution_id, last_seq FROM executions WHERE execution_id = ANY(%b) "
                "ORDER BY execution_id FOR UPDATE", (execution_ids,))
            last = {row["execution_id"]: row["last_seq"] for row in await cur.fetchall()}
            missing = [x for x in execution_ids if x not in last]
            if missing:
                raise NotFoundError(f"cannot append events to unknown execution(s) {', '.join(missing)}",
                                    where="events.append",
                                    fix="create the execution (create_execution) before its events")
            cur = await conn.execute(_INSERT, {
                "ord": list(range(len(events))),
                "execution_id": [e.execution_id for e in events],
                "event_id": [e.event_id for e in events],
                "key": [e.idempotency_key for e in events],
                "type": [e.type for e in events],
                "step": [e.step for e in events],
                "loop_index": [e.loop_index for e in events],
                "derived": [e.derived for e in events],
                "occurred_at": [e.timestamp for e in events],
                "body": [event_body(e) for e in events],
            })
            seqs = {row["idempotency_key"]: row["seq"] for row in await cur.fetchall()}
            stored = [e.model_copy(update={"seq": seqs[e.idempotency_key]})
                      for e in events if e.idempotency_key in seqs]
            advanced: dict[str, list[int]] = {}
            for event in stored:
                advanced.setdefault(event.execution_id, []).append(event.seq or 0)
            for execution_id, numbers in advanced.items():
                if numbers != list(range(last[execution_id] + 1, last[execution_id] + len(numbers) + 1)):
                    raise _Raced()  # a key was skipped after being numbered: roll back, leave no gap
            if advanced:
                ids = sorted(advanced)
                await conn.execute(_ADVANCE, (
                    ids, [last[x] + len(advanced[x]) for x in ids],
                    [any(e.type in TERMINAL_EVENTS for e in stored if e.execution_id == x) for x in ids],
                    NOTIFY_CHANNEL))
        return stored

    async def events(self, execution_id: str, *, after_seq: int = 0,
                     limit: int | None = None) -> list[Event]:
        """The execution's events with seq > after_seq, in order (at most `limit`)."""
        rows = await self._db.fetch_all(
            "SELECT (body || jsonb_build_object('seq', seq))::text AS event FROM events "
            "WHERE execution_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (execution_id, after_seq, limit))
        return [Event.model_validate_json(row["event"]) for row in rows]

    async def latest_seq(self, execution_id: str) -> int:
        """The seq of the execution's last stored event (0 before the first); poll it to stream."""
        row = await self._db.fetch_one(
            "SELECT last_seq FROM executions WHERE execution_id = %s", (execution_id,))
        if row is None:
            raise NotFoundError(f"execution '{execution_id}' is not stored", where="events.latest_seq",
                                fix="check the id (list executions to see the stored ones)")
        return int(row["last_seq"])

    async def create_execution(self, execution_id: str, *, playbook_path: str, playbook_version: int,
                               playbook_text: str, payload: Mapping[str, Any],
                               parent_execution_id: str | None = None,
                               parent_step: str | None = None) -> None:
        """Create the execution row (a retried create with the same playbook and parent is a no-op)."""
        await self.executions.create(
            execution_id, playbook_path=playbook_path, playbook_version=playbook_version,
            playbook_text=playbook_text, payload=payload, parent_execution_id=parent_execution_id,
            parent_step=parent_step)

    async def set_status(self, execution_id: str, status: str) -> None:
        await self.executions.set_status(execution_id, status)

    async def active_executions(self) -> list[str]:
        """Executions without a terminal event, oldest first (to resume after an orchestrator restart)."""
        rows = await self._db.fetch_all(
            "SELECT execution_id FROM executions WHERE ended_at IS NULL ORDER BY created_at, execution_id")
        return [row["execution_id"] for row in rows]
