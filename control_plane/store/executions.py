"""Executions: one row per run of a playbook (status, payload, parent), listed with keyset pagination."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from control_plane.errors import ConflictError, InvalidArgumentError, NotFoundError
from control_plane.store.db import Connection, Database
from engine.protocol.ids import as_int

log = logging.getLogger(__name__)

MAX_PAGE = 1000
_COLUMNS = sql.SQL(
    "execution_id, playbook_path, playbook_version, status, payload, parent_execution_id, "
    "parent_step, last_seq, ended_at, created_at, updated_at")


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution (satisfies engine.runtime.ports.ExecutionRecord)."""

    execution_id: str
    playbook_path: str
    playbook_version: int
    status: str
    payload: dict[str, Any]
    parent_execution_id: str | None
    parent_step: str | None
    last_seq: int  # seq of the last stored event (0: none yet)
    ended_at: datetime | None  # when its first terminal event was stored
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    items: list[Execution]
    next_cursor: str | None  # pass back as `cursor` for the next page; None on the last page


def _execution(row: DictRow) -> Execution:
    return Execution(**row)


def encode_cursor(created_at: datetime, execution_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), execution_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, execution_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if not isinstance(execution_id, str) or when.tzinfo is None:
            raise ValueError("bad cursor fields")
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"'{cursor}' is not a cursor of this listing", where="executions.list",
                                   fix="pass the next_cursor of the previous page unchanged, or no "
                                       "cursor for the first page") from exc
    return when, execution_id


async def insert_execution(conn: Connection, execution_id: str, *, playbook_path: str,
                           playbook_version: int, playbook_text: str, payload: Mapping[str, Any],
                           parent_execution_id: str | None = None, parent_step: str | None = None,
                           status: str = "pending") -> bool:
    """Insert the row; False if it already exists with the same playbook and parent (a retried create)."""
    try:
        cur = await conn.execute(
            "INSERT INTO executions (execution_id, playbook_path, playbook_version, playbook_text, "
            "status, payload, parent_execution_id, parent_step) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (execution_id) DO NOTHING",
            (execution_id, playbook_path, playbook_version, playbook_text, status, Jsonb(dict(payload)),
             parent_execution_id, parent_step))
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFoundError(f"parent execution '{parent_execution_id}' is not stored",
                            where=f"execution {execution_id}",
                            fix="create the parent execution first, or pass parent_execution_id=None"
                            ) from exc
    if cur.rowcount == 1:
        return True
    cur = await conn.execute(
        "SELECT playbook_path, playbook_version, parent_execution_id, parent_step FROM executions "
        "WHERE execution_id = %s", (execution_id,))
    row = await cur.fetchone()
    wanted = {"playbook_path": playbook_path, "playbook_version": playbook_version,
              "parent_execution_id": parent_execution_id, "parent_step": parent_step}
    if row is not None and dict(row) != wanted:
        raise ConflictError(f"execution '{execution_id}' already exists for {row['playbook_path']} "
                            f"v{row['playbook_version']}", where="executions",
                            fix="use a new execution id for a new run")
    return False


class ExecutionStore:
    """Read and update executions. Creation is `create` (EventStore.create_execution delegates here)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, execution_id: str, *, playbook_path: str, playbook_version: int,
                     playbook_text: str, payload: Mapping[str, Any],
                     parent_execution_id: str | None = None, parent_step: str | None = None,
                     status: str = "pending") -> bool:
        """Create the execution; True if created, False if it existed already with the same playbook."""
        async with self._db.connection() as conn:
            created = await insert_execution(
                conn, execution_id, playbook_path=playbook_path, playbook_version=playbook_version,
                playbook_text=playbook_text, payload=payload, parent_execution_id=parent_execution_id,
                parent_step=parent_step, status=status)
        if created:
            log.debug("execution %s created (%s v%s)", execution_id, playbook_path, playbook_version)
        return created

    async def get(self, execution_id: str) -> Execution:
        row = await self._db.fetch_one(
            sql.SQL("SELECT {} FROM executions WHERE execution_id = %s").format(_COLUMNS), (execution_id,))
        if row is None:
            raise _missing(execution_id)
        return _execution(row)

    async def playbook_text(self, execution_id: str) -> str:
        """The exact playbook text the execution was started with."""
        row = await self._db.fetch_one(
            "SELECT playbook_text FROM executions WHERE execution_id = %s", (execution_id,))
        if row is None:
            raise _missing(execution_id)
        return str(row["playbook_text"])

    async def set_status(self, execution_id: str, status: str) -> None:
        if not status:
            raise InvalidArgumentError("an execution status cannot be empty",
                                       where=f"execution {execution_id}",
                                       fix="pass e.g. running, completed, failed or cancelled")
        count = await self._db.execute(
            "UPDATE executions SET status = %s, updated_at = clock_timestamp() WHERE execution_id = %s",
            (status, execution_id))
        if count == 0:
            raise _missing(execution_id)

    async def list(self, *, path: str | None = None, status: str | Sequence[str] | None = None,
                   created_after: datetime | None = None, created_before: datetime | None = None,
                   parent_execution_id: str | None = None, limit: int = 50,
                   cursor: str | None = None) -> ExecutionPage:
        """Newest first. `created_after` is inclusive, `created_before` exclusive (aware datetimes)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidArgumentError(f"limit {limit} is out of range", where="executions.list",
                                       fix=f"pass a limit from 1 to {MAX_PAGE}")
        where: list[sql.Composable] = []
        params: list[Any] = []
        if path is not None:
            where.append(sql.SQL("playbook_path = %s"))
            params.append(path)
        if status is not None:
            where.append(sql.SQL("status = ANY(%s)"))
            params.append([status] if isinstance(status, str) else list(status))
        for bound, op in ((created_after, ">="), (created_before, "<")):
            if bound is not None:
                if bound.tzinfo is None:
                    raise InvalidArgumentError(f"time bound {bound.isoformat()} has no time zone",
                                               where="executions.list",
                                               fix="pass an aware datetime, e.g. datetime.now(UTC)")
                where.append(sql.SQL("created_at {} %s").format(sql.SQL(op)))
                params.append(bound)
        if parent_execution_id is not None:
            where.append(sql.SQL("parent_execution_id = %s"))
            params.append(parent_execution_id)
        if cursor is not None:
            where.append(sql.SQL("(created_at, execution_id) < (%s, %s)"))
            params.extend(decode_cursor(cursor))
        query = sql.SQL("SELECT {} FROM executions {} ORDER BY created_at DESC, execution_id DESC "
                        "LIMIT %s").format(
            _COLUMNS, sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""))
        rows = await self._db.fetch_all(query, [*params, limit + 1])
        items = [_execution(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last.created_at, last.execution_id)
        return ExecutionPage(items, next_cursor)


def _missing(execution_id: str) -> NotFoundError:
    shape = ("" if as_int(execution_id) is not None else
             "; an execution id is the decimal digits of a 64-bit integer, as `noetl run` prints it")
    return NotFoundError(f"execution '{execution_id}' is not stored", where="executions",
                         fix=f"check the id (list executions to see the stored ones){shape}")
