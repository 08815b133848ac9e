"""What the analytics exporter (agents/analytics) reads and keeps, over the store's ExportStore.

The exporter never reads the store itself; it follows `ExportFeed`:

- `snapshot_hi()` then `events_after(key, hi, limit)`: the next events in (txid, execution_id, seq)
  order below `hi`, the xmin of a snapshot (migration 0010): every transaction below it has ended, so
  a row committed out of order (several orchestrators append at once) is never skipped, and the same
  range read again gives the same rows (`events_between`, after a restart mid-batch);
- `ended(execution_ids, hi)`: the executions and all their events below `hi` (one execution's rows);
- the cursor and state: `state(name)`, `save_position`, `save_done`, `save_error`; `status(name)`
  adds the lag (events after the cursor, the oldest one's age).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from control_plane.store import Store
from control_plane.store.exports import ExportStore, Key

START: Key = (0, "", 0)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One stored event with its place in the export order and its execution's playbook."""

    txid: int  # 0: appended before migration 0010
    execution_id: str
    seq: int
    event_id: str
    type: str
    step: str | None
    loop_index: int | None
    derived: bool
    occurred_at: datetime
    recorded_at: datetime
    body: dict[str, Any]
    playbook_path: str
    playbook_version: int

    @property
    def key(self) -> Key:
        return (self.txid, self.execution_id, self.seq)


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    execution_id: str
    playbook_path: str
    playbook_version: int
    status: str
    parent_execution_id: str | None
    parent_step: str | None
    created_at: datetime
    ended_at: datetime | None
    last_seq: int
    events: list[LogEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExportStatus:
    name: str
    position: dict[str, Any]
    rows_exported: dict[str, int]
    sinks: list[str]
    last_export_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    lag_events: int
    lag_seconds: float

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        key = key_of(self.position.get("key"))
        return {"name": self.name,
                "cursor": None if key == START else {"txid": key[0], "execution_id": key[1], "seq": key[2]},
                "pending_batch": self.position.get("pending"),
                "lag_events": self.lag_events, "lag_seconds": round(self.lag_seconds, 3),
                "rows_exported": self.rows_exported, "last_export_at": iso(self.last_export_at),
                "sinks": self.sinks, "last_error": self.last_error, "last_error_at": iso(self.last_error_at)}


def key_of(value: Any) -> Key:
    """A stored key ([txid, execution_id, seq]) back as a tuple; START for none."""
    if not value:
        return START
    txid, execution_id, seq = value
    return (int(txid), str(execution_id), int(seq))


class ExportFeed:
    """The exporter's view of the control plane (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._q = ExportStore(store.db)

    async def snapshot_hi(self) -> int:
        return await self._q.snapshot_hi()

    async def events_after(self, key: Key, hi: int, limit: int) -> list[LogEvent]:
        return [_event(r) for r in await self._q.events_after(key, hi, limit)]

    async def events_between(self, after: Key, upto: Key) -> list[LogEvent]:
        return [_event(r) for r in await self._q.events_between(after, upto)]

    async def ended(self, execution_ids: Sequence[str], hi: int) -> list[ExecutionRecord]:
        """The executions with all their events below `hi` (in seq order), by id."""
        if not execution_ids:
            return []
        events: dict[str, list[LogEvent]] = {}
        for row in await self._q.events_of(execution_ids, hi):
            events.setdefault(row["execution_id"], []).append(_event(row))
        rows = sorted(await self._q.executions(execution_ids), key=lambda r: r["execution_id"])
        return [ExecutionRecord(execution_id=r["execution_id"], playbook_path=r["playbook_path"],
                                playbook_version=r["playbook_version"], status=r["status"],
                                parent_execution_id=r["parent_execution_id"], parent_step=r["parent_step"],
                                created_at=r["created_at"], ended_at=r["ended_at"], last_seq=r["last_seq"],
                                events=events.get(r["execution_id"], [])) for r in rows]

    async def position(self, name: str) -> dict[str, Any]:
        row = await self._q.state(name)
        return {} if row is None else dict(row["position"])

    async def save_position(self, name: str, position: Mapping[str, Any], sinks: Sequence[str],
                            expected: Mapping[str, Any]) -> bool:
        """Move the cursor from `expected` (what the caller read) to `position`; False: another exporter of
        the same name moved it first (nothing stored)."""
        return await self._q.save_position(name, position, sinks, expected)

    async def save_done(self, name: str, position: Mapping[str, Any], sinks: Sequence[str],
                        rows: Mapping[str, int], expected: Mapping[str, Any]) -> bool:
        return await self._q.save_done(name, position, sinks, rows, expected)

    async def save_error(self, name: str, error: str, sinks: Sequence[str]) -> None:
        await self._q.save_error(name, error, sinks)

    async def status(self, name: str) -> ExportStatus:
        """Where exporter `name` stands and how far behind it is (never run: the whole log is pending)."""
        row = await self._q.state(name)
        position = {} if row is None else dict(row["position"])
        lag, oldest = await self._q.pending(key_of(position.get("key")))
        now = None if row is None else row["now"]
        if now is None:
            now = datetime.now(oldest.tzinfo) if oldest is not None else None
        lag_s = 0.0 if oldest is None or now is None else max(0.0, (now - oldest).total_seconds())
        return ExportStatus(
            name=name, position=position,
            rows_exported={k: int(v) for k, v in dict(row["rows_exported"] if row else {}).items()},
            sinks=list(row["sinks"]) if row else [], last_export_at=row["last_export_at"] if row else None,
            last_error=row["last_error"] if row else None,
            last_error_at=row["last_error_at"] if row else None,
            lag_events=lag, lag_seconds=lag_s)


def _event(row: Mapping[str, Any]) -> LogEvent:
    return LogEvent(txid=int(row["txid"]), execution_id=row["execution_id"], seq=int(row["seq"]),
                    event_id=row["event_id"], type=row["type"], step=row["step"],
                    loop_index=row["loop_index"], derived=bool(row["derived"]),
                    occurred_at=row["occurred_at"], recorded_at=row["recorded_at"],
                    body=json.loads(row["body"]), playbook_path=row["playbook_path"],
                    playbook_version=int(row["playbook_version"]))
