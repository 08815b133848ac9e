"""What the analytics exporter reads and keeps: events in commit-safe order (migration 0010's `txid`),
the executions they belong to, and the exporter's cursor and state (`export_cursors`).

Order: rows appended before migration 0010 (txid NULL) first, by (execution_id, seq); then by
(txid, execution_id, seq), only below `hi` = xmin of a snapshot taken first (`snapshot_hi`): every
transaction with a smaller id has ended, so that part of the log no longer changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from control_plane.store.db import Database

_COLUMNS = ("COALESCE(e.txid::text, '0') AS txid, e.execution_id, e.seq, e.event_id, e.type, e.step, "
            "e.loop_index, e.derived, e.occurred_at, e.recorded_at, e.body::text AS body, "
            "x.playbook_path, x.playbook_version")
_FROM = "FROM events e JOIN executions x ON x.execution_id = e.execution_id"
_LEGACY_AFTER = (f"SELECT {_COLUMNS} {_FROM} WHERE e.txid IS NULL AND (e.execution_id, e.seq) > (%s, %s) "
                 "ORDER BY e.execution_id, e.seq LIMIT %s")
_LEGACY_RANGE = (f"SELECT {_COLUMNS} {_FROM} WHERE e.txid IS NULL AND (e.execution_id, e.seq) > (%s, %s) "
                 "AND (e.execution_id, e.seq) <= (%s, %s) ORDER BY e.execution_id, e.seq")
_AFTER = (f"SELECT {_COLUMNS} {_FROM} WHERE e.txid IS NOT NULL "
          "AND (e.txid, e.execution_id, e.seq) > (%s::text::xid8, %s, %s) AND e.txid < %s::text::xid8 "
          "ORDER BY e.txid, e.execution_id, e.seq LIMIT %s")
_RANGE = (f"SELECT {_COLUMNS} {_FROM} WHERE e.txid IS NOT NULL "
          "AND (e.txid, e.execution_id, e.seq) > (%s::text::xid8, %s, %s) "
          "AND (e.txid, e.execution_id, e.seq) <= (%s::text::xid8, %s, %s) "
          "ORDER BY e.txid, e.execution_id, e.seq")
_OF_EXECUTIONS = (f"SELECT {_COLUMNS} {_FROM} WHERE e.execution_id = ANY(%s) "
                  "AND (e.txid IS NULL OR e.txid < %s::text::xid8) ORDER BY e.execution_id, e.seq")
_EXECUTIONS = ("SELECT execution_id, playbook_path, playbook_version, status, parent_execution_id, "
               "parent_step, created_at, ended_at, last_seq FROM executions WHERE execution_id = ANY(%s)")
_HI = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS hi"
_PENDING_LEGACY = ("SELECT count(*) AS n, min(recorded_at) AS oldest FROM events "
                   "WHERE txid IS NULL AND (execution_id, seq) > (%s, %s)")
_PENDING = ("SELECT count(*) AS n, min(recorded_at) AS oldest FROM events WHERE txid IS NOT NULL "
            "AND (txid, execution_id, seq) > (%s::text::xid8, %s, %s)")
_STATE = ("SELECT name, position, rows_exported, sinks, last_export_at, last_error, last_error_at, "
          "updated_at, clock_timestamp() AS now FROM export_cursors WHERE name = %s")
# the position moves only from the one its writer read (compare and set): two exporters of the same name
# never interleave their batches, the second one finds the position moved and waits for its next round
_SAVE = """
INSERT INTO export_cursors (name, position, sinks) VALUES (%(name)s, %(position)s, %(sinks)s)
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, sinks = EXCLUDED.sinks,
    updated_at = clock_timestamp()
WHERE export_cursors.position = %(expected)s"""
_DONE = """
INSERT INTO export_cursors (name, position, sinks, rows_exported, last_export_at, last_error, last_error_at)
VALUES (%(name)s, %(position)s, %(sinks)s, %(rows)s, clock_timestamp(), NULL, NULL)
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, sinks = EXCLUDED.sinks,
    rows_exported = (
        SELECT COALESCE(jsonb_object_agg(k, COALESCE((export_cursors.rows_exported->>k)::bigint, 0)
                                            + COALESCE((EXCLUDED.rows_exported->>k)::bigint, 0)), '{}'::jsonb)
        FROM (SELECT jsonb_object_keys(export_cursors.rows_exported || EXCLUDED.rows_exported) AS k) ks),
    last_export_at = clock_timestamp(), last_error = NULL, last_error_at = NULL,
    updated_at = clock_timestamp()
WHERE export_cursors.position = %(expected)s"""
_ERROR = """
INSERT INTO export_cursors (name, position, sinks, last_error, last_error_at)
VALUES (%(name)s, '{}'::jsonb, %(sinks)s, %(error)s, clock_timestamp())
ON CONFLICT (name) DO UPDATE SET sinks = EXCLUDED.sinks, last_error = EXCLUDED.last_error,
    last_error_at = clock_timestamp(), updated_at = clock_timestamp()"""

Key = tuple[int, str, int]  # (txid, 0 for rows older than migration 0010; execution_id; seq)


class ExportStore:
    """The exporter's queries (see the module docstring); rows carry the columns of `_COLUMNS`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def snapshot_hi(self) -> int:
        """xmin of a fresh snapshot: every transaction with a smaller id has ended."""
        row = await self._db.fetch_one(_HI)
        assert row is not None
        return int(row["hi"])

    async def events_after(self, key: Key, hi: int, limit: int) -> list[DictRow]:
        """Up to `limit` events after `key`, below `hi`; rows older than 0010 come alone (a batch of their
        own)."""
        txid, execution_id, seq = key
        if txid == 0:
            legacy = await self._db.fetch_all(_LEGACY_AFTER, (execution_id, seq, limit))
            if legacy:
                return legacy
            execution_id, seq = "", 0
        return await self._db.fetch_all(_AFTER, (str(txid), execution_id, seq, str(hi), limit))

    async def events_between(self, after: Key, upto: Key) -> list[DictRow]:
        """The events after `after` up to `upto` included (a batch read again after a restart)."""
        if upto[0] == 0:
            return await self._db.fetch_all(_LEGACY_RANGE, (after[1], after[2], upto[1], upto[2]))
        start = after if after[0] else (0, "", 0)
        return await self._db.fetch_all(_RANGE, (str(start[0]), start[1], start[2], str(upto[0]), upto[1],
                                                 upto[2]))

    async def events_of(self, execution_ids: Sequence[str], hi: int) -> list[DictRow]:
        """All the events of these executions below `hi`, by execution and seq."""
        return await self._db.fetch_all(_OF_EXECUTIONS, (list(execution_ids), str(hi)))

    async def executions(self, execution_ids: Sequence[str]) -> list[DictRow]:
        return await self._db.fetch_all(_EXECUTIONS, (list(execution_ids),))

    async def pending(self, key: Key) -> tuple[int, Any]:
        """(events after `key`, the oldest one's recorded_at or None)."""
        txid, execution_id, seq = key
        count, oldest = 0, None
        if txid == 0:
            row = await self._db.fetch_one(_PENDING_LEGACY, (execution_id, seq))
            assert row is not None
            count, oldest = int(row["n"]), row["oldest"]
            execution_id, seq = "", 0
        row = await self._db.fetch_one(_PENDING, (str(txid), execution_id, seq))
        assert row is not None
        if row["oldest"] is not None and (oldest is None or row["oldest"] < oldest):
            oldest = row["oldest"]
        return count + int(row["n"]), oldest

    async def state(self, name: str) -> DictRow | None:
        return await self._db.fetch_one(_STATE, (name,))

    async def save_position(self, name: str, position: Mapping[str, Any], sinks: Sequence[str],
                            expected: Mapping[str, Any]) -> bool:
        """Store `position` if the stored one is still `expected` ({} for none); whether it was."""
        return await self._db.execute(_SAVE, {"name": name, "position": Jsonb(dict(position)),
                                              "sinks": list(sinks), "expected": Jsonb(dict(expected))}) == 1

    async def save_done(self, name: str, position: Mapping[str, Any], sinks: Sequence[str],
                        rows: Mapping[str, int], expected: Mapping[str, Any]) -> bool:
        """`save_position` after a batch was written, adding `rows` to the counts; whether it was stored."""
        return await self._db.execute(_DONE, {"name": name, "position": Jsonb(dict(position)),
                                              "sinks": list(sinks), "rows": Jsonb(dict(rows)),
                                              "expected": Jsonb(dict(expected))}) == 1

    async def save_error(self, name: str, error: str, sinks: Sequence[str]) -> None:
        await self._db.execute(_ERROR, {"name": name, "error": error, "sinks": list(sinks)})
