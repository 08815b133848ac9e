"""What the event-log indexer (agents/embeddings) reads: ended executions in the order they ended, the
indexer's stored cursor, and what happened after a failure (a later run of the same playbook).

The indexer never reads the store itself; it follows `IndexingFeed.ended_after(position)`:

- executions with `ended_at` set, ordered by (ended_at, execution_id), each with its events (in seq order)
  and the playbook text it ran;
- `ended_at` is the clock of the transaction that stored the terminal event, and a transaction can commit
  after a later one: every read goes back a lookback window (30 s) before the position, and the position
  remembers the executions already returned inside that window, so a late commit is picked up and none
  is returned twice. The position is plain JSON, stored with `set_cursor` after the caller has used the
  batch: a crash in between returns the same batch again (the indexer's point ids are deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.store import Store
from engine.protocol.events import Event

LOOKBACK_S = 30.0
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class EndedExecution:
    """One execution as the indexer sees it (satisfies agents.embeddings.documents.ExecutionSource)."""

    execution_id: str
    playbook_path: str
    playbook_version: int
    status: str
    parent_execution_id: str | None
    parent_step: str | None
    created_at: datetime
    ended_at: datetime | None  # None while it runs (only from `execution`, never from `ended_after`)
    playbook_text: str
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LaterRun:
    """What came after `execution_id`: the next ended run of the same playbook (None fields: none yet)."""

    execution_id: str
    step: str | None
    later_execution_id: str | None
    later_status: str | None  # completed | failed | cancelled
    later_step_outcome: str | None  # succeeded | failed; None: the step did not run there (or no step)


class IndexingFeed:
    """The indexer's view of the control plane (see the module docstring)."""

    def __init__(self, store: Store, *, lookback_s: float = LOOKBACK_S) -> None:
        self.store = store
        self.lookback = timedelta(seconds=lookback_s)

    async def ended_after(self, position: Mapping[str, Any] | None,
                          limit: int = 50) -> tuple[list[EndedExecution], dict[str, Any]]:
        """The next executions that ended after `position` (None: from the start), and the new position."""
        if not 1 <= limit <= MAX_BATCH:
            raise InvalidArgumentError(f"limit {limit} is out of range", where="indexing.ended_after",
                                       fix=f"pass a limit from 1 to {MAX_BATCH}")
        last, recent = _parse_position(position)
        if last is None:
            rows = await self.store.indexing.ended_first(limit)
        else:
            rows = await self.store.indexing.ended_since(last - self.lookback, list(recent), limit)
        executions = await self._with_events(rows)
        for execution in executions:
            assert execution.ended_at is not None
            recent[execution.execution_id] = execution.ended_at
            if last is None or execution.ended_at > last:
                last = execution.ended_at
        if last is None:
            return executions, {}
        floor = last - self.lookback
        kept = {key: when for key, when in recent.items() if when > floor}
        return executions, {"ended_at": last.isoformat(),
                            "recent": {key: when.isoformat() for key, when in sorted(kept.items())}}

    async def execution(self, execution_id: str) -> EndedExecution:
        """One execution with its events, ended or not; NotFoundError for an unknown id."""
        row = await self.store.indexing.execution(execution_id)
        if row is None:
            raise NotFoundError(f"execution '{execution_id}' is not stored", where="executions",
                                fix="check the id (list executions to see the stored ones)")
        return (await self._with_events([row]))[0]

    async def get_cursor(self, name: str) -> dict[str, Any] | None:
        return await self.store.cursors.get(name)

    async def set_cursor(self, name: str, position: Mapping[str, Any]) -> None:
        await self.store.cursors.set(name, position)

    async def later_runs(self, asked: Sequence[tuple[str, str | None]]
                         ) -> dict[tuple[str, str | None], LaterRun]:
        """For each (execution_id, step): the next ended run of the same playbook and the step's outcome
        there. Unknown execution ids are left out of the answer."""
        if not asked:
            return {}
        unique = list(dict.fromkeys(asked))
        rows = await self.store.indexing.later_runs([e for e, _ in unique], [s for _, s in unique])
        found: dict[tuple[str, str | None], LaterRun] = {}
        for row in rows:
            outcome = row["later_step_outcome"]
            found[(row["execution_id"], row["step"])] = LaterRun(
                execution_id=row["execution_id"], step=row["step"],
                later_execution_id=row["later_execution_id"], later_status=row["later_status"],
                later_step_outcome=outcome.split(".", 1)[1] if outcome else None)
        return found

    async def _with_events(self, rows: Sequence[Mapping[str, Any]]) -> list[EndedExecution]:
        if not rows:
            return []
        events = await self.store.indexing.events_of([row["execution_id"] for row in rows])
        return [EndedExecution(**dict(row), events=events[row["execution_id"]]) for row in rows]


def _parse_position(position: Mapping[str, Any] | None) -> tuple[datetime | None, dict[str, datetime]]:
    if not position:
        return None, {}
    try:
        last = datetime.fromisoformat(str(position["ended_at"]))
        recent = {str(k): datetime.fromisoformat(str(v)) for k, v in (position.get("recent") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidArgumentError(f"{dict(position)!r} is not a position of the indexing feed",
                                   where="indexing.ended_after",
                                   fix="pass back the position ended_after returned, or None to start over"
                                   ) from exc
    return last, recent
