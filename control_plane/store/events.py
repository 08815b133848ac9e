"""The append-only event log in Postgres: implements engine.runtime.ports.EventLog.

Order: each execution row carries `last_seq`. `append` is one statement, the function
`noetl_append_events` (migration 0002), committed on its own: it locks the rows of the
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

import psycopg

from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.db import Database
from control_plane.store.executions import ExecutionStore
from engine.protocol.events import Event
from engine.protocol.partitions import partition_of
from engine.runtime.partitions import Fence, PartitionFencedError

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "noetl_events"
# jsonb cannot hold U+0000; an escaped NUL (an odd run of backslashes before u0000) becomes U+FFFD
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")

# the whole append in one statement (migration 0002): one round trip, committed on its own. The batch
# travels as ONE jsonb array of the events' bodies, unpacked into the function's columns by Postgres:
# psycopg dumping ten arrays element by element in Python cost ~11 us per event in the orchestrator
_APPEND: LiteralString = """
WITH batch AS (
    SELECT array_agg((e.ord - 1)::int ORDER BY e.ord) AS ord,
           array_agg(e.body->>'execution_id' ORDER BY e.ord) AS execution_id,
           array_agg(e.body->>'event_id' ORDER BY e.ord) AS event_id,
           array_agg(e.body->>'idempotency_key' ORDER BY e.ord) AS key,
           array_agg(e.body->>'type' ORDER BY e.ord) AS type,
           array_agg(e.body->>'step' ORDER BY e.ord) AS step,
           array_agg((e.body->>'loop_index')::int ORDER BY e.ord) AS loop_index,
           array_agg((e.body->>'derived')::bool ORDER BY e.ord) AS derived,
           array_agg((e.body->>'timestamp')::timestamptz ORDER BY e.ord) AS occurred_at,
           array_agg(e.body ORDER BY e.ord) AS body
    FROM jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS e(body, ord))
SELECT r.stored_key AS idempotency_key, r.stored_seq AS seq
FROM batch, LATERAL noetl_append_events(batch.ord, batch.execution_id, batch.event_id, batch.key,
                                        batch.type, batch.step, batch.loop_index, batch.derived,
                                        batch.occurred_at, batch.body) AS r"""
# the same, for an orchestrator that owns partitions: nothing is stored unless it still holds each
# partition of the batch at the epoch it took it with (migration 0008); the check share-locks the leases
_APPEND_FENCED: LiteralString = (
    _APPEND.replace("WITH batch AS (", "WITH fence AS MATERIALIZED (SELECT noetl_check_fence("
                    "%(owner)s, %(parts)s::integer[], %(epochs)s::bigint[]) AS ok),\nbatch AS (", 1)
    .replace("FROM batch, LATERAL", "FROM fence, batch, LATERAL", 1)
    + "\nWHERE fence.ok")
_RACED = "NE001"  # SQLSTATEs raised by noetl_append_events
_UNKNOWN_EXECUTION = "NE002"
_FENCED = "NE003"  # raised by noetl_check_fence
_ATTEMPTS = 5


def _fence_params(events: Sequence[Event], fence: Fence) -> dict[str, Any]:
    """The fence's owner and, for each partition of the events, the epoch it holds it at."""
    parts = sorted({partition_of(event.execution_id) for event in events})
    missing = [p for p in parts if p not in fence.epochs]
    if missing:
        raise PartitionFencedError(f"orchestrator {fence.owner} does not own partitions {missing} of this "
                                   "append", where="events.append",
                                   fix="another orchestrator owns them; it records their events")
    return {"owner": fence.owner, "parts": parts, "epochs": [fence.epochs[p] for p in parts]}


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
        unique, seqs = await self._store(events)
        return [e.model_copy(update={"seq": seqs[e.idempotency_key]})
                for e in unique if e.idempotency_key in seqs]

    async def record(self, events: Sequence[Event], *, fence: Fence | None = None) -> int:
        """`append` without the copies: how many of the events were stored now. With a `fence`, nothing is
        stored (PartitionFencedError) unless its owner still holds each partition of the events at the
        fence's epoch."""
        return len((await self._store(events, _fence_params(events, fence) if fence else None))[1])

    async def _store(self, events: Sequence[Event],
                     fence: dict[str, Any] | None = None) -> tuple[list[Event], dict[str, int]]:
        """(the batch without repeated keys, idempotency key -> seq of each event stored now)."""
        batch: dict[str, Event] = {}
        for event in events:
            batch.setdefault(event.idempotency_key, event)  # a duplicate within the batch: first wins
        if not batch:
            return [], {}
        unique = list(batch.values())
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                seqs = await self._append_once(unique, fence)
            except _Raced:
                log.debug("append raced a concurrent writer of the same key (attempt %d)", attempt)
                continue
            if len(seqs) < len(events):
                log.debug("append: %d of %d events were duplicates", len(events) - len(seqs), len(events))
            return unique, seqs
        raise ConflictError(f"{_ATTEMPTS} attempts to append raced concurrent writers of the same "
                            "idempotency keys", where="events.append",
                            fix="idempotency keys must be unique per event; include the execution id")

    async def _append_once(self, events: list[Event], fence: dict[str, Any] | None) -> dict[str, int]:
        body = "[" + ",".join(event_body(e) for e in events) + "]"
        try:
            if fence is None:
                rows = await self._db.fetch_all(_APPEND, {"events": body})
            else:
                rows = await self._db.fetch_all(_APPEND_FENCED, {"events": body, **fence})
        except psycopg.Error as exc:
            if exc.sqlstate == _RACED:
                raise _Raced() from exc
            if exc.sqlstate == _FENCED:
                raise PartitionFencedError(str(exc.diag.message_primary or exc), where="events.append",
                                           fix="another orchestrator owns the partition now; this one "
                                               "takes its state again from the log") from exc
            if exc.sqlstate == _UNKNOWN_EXECUTION:
                raise NotFoundError(str(exc.diag.message_primary or exc), where="events.append",
                                    fix="create the execution (create_execution) before its events") from exc
            raise
        return {row["idempotency_key"]: row["seq"] for row in rows}

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
                               parent_step: str | None = None) -> bool:
        """Create the execution row: True if created now, False for a retried create with the same
        playbook and parent (a no-op); ConflictError when the id is another execution's."""
        return await self.executions.create(
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
