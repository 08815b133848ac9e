"""Proposals, their transitions and the versioned overlays of playbook steps, in Postgres.

Every write is one transaction that moves a proposal from the state the caller read (optimistic: another
writer in between makes it a ConflictError), records the new transitions, and may add an overlay version
(under a per-step advisory lock, numbered max + 1). Each commit notifies `noetl_proposals` so a waiting
agent wakes at once (`ProposalNotifications`); transitions and overlay versions are append-only.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.db import Connection, Database
from policies.model import Proposal, Transition

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "noetl_proposals"
_COLUMNS: LiteralString = (
    "proposal_id, kind, path, step, change, rollback_of, rationale, diagnosis, evidence, transience, author, "
    "author_name, risk, state, base_version, applied_version, applied_at, overlay, measurement, rollback_id, "
    "created_at, updated_at")
_INSERT: LiteralString = "INSERT INTO proposals (" + _COLUMNS + ") VALUES (" + ", ".join(["%s"] * 22) + ")"
_INSERT_OVERLAY: LiteralString = (
    "INSERT INTO policy_overlays (path, step, version, overlay, proposal_id, restores, created_by, reason) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
_INSERT_TRANSITION: LiteralString = (
    "INSERT INTO proposal_transitions (proposal_id, seq, from_state, to_state, who, who_name, why, at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
_ACTIVE: LiteralString = (
    "SELECT DISTINCT ON (step) * FROM policy_overlays WHERE path = %s ORDER BY step, version DESC")


@dataclass(frozen=True, slots=True)
class OverlayVersion:
    path: str
    step: str
    version: int
    overlay: dict[str, Any]
    proposal_id: str | None
    restores: int | None
    created_by: str
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewOverlay:
    """An overlay version to add with a commit: the whole overlay of the step after it."""

    overlay: dict[str, Any]
    created_by: str
    reason: str
    restores: int | None = None
    expect_active: int | None = None  # a rollback: the version that must still be active
    check_active: bool = False
    record: bool = True  # set the proposal's base/applied version, applied_at and overlay from it


def _proposal(row: DictRow, transitions: list[Transition]) -> Proposal:
    data = dict(row)
    data["id"] = data.pop("proposal_id")
    data["target"] = {"path": data.pop("path"), "step": data.pop("step")}
    return Proposal.model_validate({**data, "transitions": transitions})


def _transition(row: DictRow) -> Transition:
    return Transition(from_state=row["from_state"], to_state=row["to_state"], who=row["who"],
                      who_name=row["who_name"], why=row["why"], at=row["at"])


def _jsonb(value: Any) -> Jsonb | None:
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return Jsonb(value)


class PolicyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ proposals
    async def insert(self, proposal: Proposal) -> Proposal:
        """Store a new proposal with its first transition. ConflictError when the step already has an open
        proposal of the same kind (the unique index holds the guardrail against concurrent proposers)."""
        try:
            async with self._db.transaction() as conn:
                await conn.execute(_INSERT, (
                    proposal.id, proposal.kind, proposal.target.path, proposal.target.step,
                    _jsonb(proposal.change.overlay() if proposal.change else None), proposal.rollback_of,
                    proposal.rationale, _jsonb(proposal.diagnosis), Jsonb(list(proposal.evidence)),
                    proposal.transience, proposal.author, proposal.author_name, proposal.risk, proposal.state,
                    proposal.base_version, proposal.applied_version, proposal.applied_at,
                    _jsonb(proposal.overlay), _jsonb(proposal.measurement), proposal.rollback_id,
                    proposal.created_at, proposal.updated_at))
                await self._transitions(conn, proposal, 0)
                await self._notify(conn, proposal)
        except psycopg.errors.UniqueViolation as exc:
            target = proposal.target
            raise ConflictError(f"step '{target.step}' of '{target.path}' already has an open "
                                f"{proposal.kind} proposal", where="proposals",
                                fix="decide the open proposal first (noetl proposals list --state proposed)"
                                ) from exc
        log.info("proposal %s stored (%s %s of %s step %s)", proposal.id, proposal.state, proposal.kind,
                 proposal.target.path, proposal.target.step)
        return proposal

    async def commit(self, before: Proposal, after: Proposal, overlay: NewOverlay | None = None,
                     also: Sequence[tuple[Proposal, Proposal]] = ()) -> Proposal:
        """Move the proposal from `before.state` to `after` (its fields and new transitions) in one
        transaction with the moves in `also`, adding an overlay version when given (with `record`, `after`
        gets its base/applied version, applied_at and overlay). ConflictError when another writer moved a
        proposal in between, or when the overlay is not at the version a rollback expects."""
        async with self._db.transaction() as conn:
            if overlay is not None:
                version, base = await self._add_overlay(conn, after, overlay)
                if overlay.record:
                    after = after.model_copy(update={
                        "base_version": base, "applied_version": version, "applied_at": after.updated_at,
                        "overlay": overlay.overlay})
            for old, new in ((before, after), *also):
                await self._update(conn, old, new)
        return after

    async def _update(self, conn: Connection, before: Proposal, after: Proposal) -> None:
        cur = await conn.execute(
            "UPDATE proposals SET state = %s, updated_at = %s, base_version = %s, applied_version = %s, "
            "applied_at = %s, overlay = %s, measurement = %s, rollback_id = %s "
            "WHERE proposal_id = %s AND state = %s",
            (after.state, after.updated_at, after.base_version, after.applied_version, after.applied_at,
             _jsonb(after.overlay), _jsonb(after.measurement), after.rollback_id, after.id, before.state))
        if cur.rowcount != 1:
            raise ConflictError(f"proposal {after.id} changed while this request was deciding it",
                                where=f"proposal {after.id}", fix="read it again and retry")
        await self._transitions(conn, after, len(before.transitions))
        await self._notify(conn, after)

    async def _add_overlay(self, conn: Connection, proposal: Proposal,
                           overlay: NewOverlay) -> tuple[int, int | None]:
        path, step = proposal.target.path, proposal.target.step
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                           (f"overlay\x1f{path}\x1f{step}",))
        cur = await conn.execute(
            "SELECT max(version) AS v FROM policy_overlays WHERE path = %s AND step = %s", (path, step))
        row = await cur.fetchone()
        current = int(row["v"]) if row and row["v"] is not None else None
        if overlay.check_active and current != overlay.expect_active:
            raise ConflictError(f"the overlay of step '{step}' is at version {current}, not "
                                f"{overlay.expect_active}: a later change was applied",
                                where=f"proposal {proposal.id}",
                                fix="roll back the latest change of the step first")
        version = (current or 0) + 1
        await conn.execute(_INSERT_OVERLAY, (path, step, version, Jsonb(overlay.overlay), proposal.id,
                                             overlay.restores, overlay.created_by, overlay.reason))
        log.info("overlay of %s step %s is now version %d (proposal %s)", path, step, version, proposal.id)
        return version, current

    async def _transitions(self, conn: Connection, proposal: Proposal, stored: int) -> None:
        for seq, step in enumerate(proposal.transitions[stored:], start=stored + 1):
            await conn.execute(_INSERT_TRANSITION, (proposal.id, seq, step.from_state, step.to_state,
                                                    step.who, step.who_name, step.why, step.at))

    async def _notify(self, conn: Connection, proposal: Proposal) -> None:
        payload = json.dumps({"proposal_id": proposal.id, "state": proposal.state})
        await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))

    async def get(self, proposal_id: str) -> Proposal:
        row = await self._db.fetch_one("SELECT " + _COLUMNS + " FROM proposals WHERE proposal_id = %s",
                                       (proposal_id,))
        if row is None:
            raise NotFoundError(f"proposal '{proposal_id}' is not stored", where="proposals",
                                fix="list the proposals (noetl proposals list) to see their ids")
        rows = await self._db.fetch_all(
            "SELECT * FROM proposal_transitions WHERE proposal_id = %s ORDER BY seq", (proposal_id,))
        return _proposal(row, [_transition(r) for r in rows])

    async def list(self, *, states: Sequence[str] | None = None, path: str | None = None,
                   step: str | None = None, kind: str | None = None, limit: int = 100) -> list[Proposal]:
        """Newest first, each with its transitions."""
        where: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (("path", path), ("step", step), ("kind", kind)):
            if value is not None:
                where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if states:
            where.append(sql.SQL("state = ANY(%s)"))
            params.append(list(states))
        template = sql.SQL("SELECT {} FROM proposals {} ORDER BY created_at DESC, proposal_id DESC LIMIT %s")
        query = template.format(sql.SQL(_COLUMNS),
                                sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""))
        rows = await self._db.fetch_all(query, [*params, limit])
        if not rows:
            return []
        ids = [r["proposal_id"] for r in rows]
        transitions: dict[str, list[Transition]] = {i: [] for i in ids}
        for r in await self._db.fetch_all("SELECT * FROM proposal_transitions WHERE proposal_id = ANY(%s) "
                                          "ORDER BY proposal_id, seq", (ids,)):
            transitions[r["proposal_id"]].append(_transition(r))
        return [_proposal(r, transitions[r["proposal_id"]]) for r in rows]

    async def count_since(self, path: str, step: str, since: datetime, kind: str = "change") -> int:
        row = await self._db.fetch_one(
            "SELECT count(*) AS n FROM proposals WHERE path = %s AND step = %s AND kind = %s "
            "AND created_at >= %s", (path, step, kind, since))
        return int(row["n"]) if row else 0

    # ------------------------------------------------------------------ overlays
    async def active(self, path: str) -> dict[str, OverlayVersion]:
        """The active (latest) overlay version of every step of `path` that has one."""
        rows = await self._db.fetch_all(_ACTIVE, (path,))
        return {r["step"]: OverlayVersion(**r) for r in rows}

    async def versions(self, path: str, step: str | None = None) -> builtins.list[OverlayVersion]:
        """Every overlay version of the path's steps (or one step), by step and version."""
        rows = await self._db.fetch_all(
            "SELECT * FROM policy_overlays WHERE path = %s AND (%s::text IS NULL OR step = %s) "
            "ORDER BY step, version", (path, step, step))
        return [OverlayVersion(**r) for r in rows]

    async def version(self, path: str, step: str, version: int) -> OverlayVersion | None:
        row = await self._db.fetch_one(
            "SELECT * FROM policy_overlays WHERE path = %s AND step = %s AND version = %s",
            (path, step, version))
        return OverlayVersion(**row) if row is not None else None

    async def served_pools(self, recent: int = 10000) -> builtins.list[str]:
        """The pools workers reported in their latest `step.started` events (the known pools until pools are
        declared in the configuration)."""
        rows = await self._db.fetch_all(
            "SELECT DISTINCT pool FROM (SELECT body->>'pool' AS pool FROM events WHERE type = 'step.started' "
            "ORDER BY occurred_at DESC LIMIT %s) recent WHERE pool IS NOT NULL", (recent,))
        return sorted(str(r["pool"]) for r in rows)


class ProposalNotifications:
    """`await wait(timeout_s)` returns when any proposal changed (or on timeout: waiters poll anyway)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def wait(self, timeout_s: float) -> bool:
        """True when a proposal changed since the last wait."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        changed = self._changed.is_set()
        self._changed.clear()
        return changed

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    async for _ in conn.notifies():
                        self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged, retried; waiters poll meanwhile
                log.warning("listening for proposal changes failed (%s); retrying in 1 s", type(exc).__name__)
                await asyncio.sleep(1.0)
