"""The postgres tool (spec 3.2): the statements of one attempt in one transaction over psycopg 3 (async).

The connection comes from `connection_string` or from `auth` (a credential with `dsn`, or `db_host`,
`db_port`, `db_user`, `db_password`, `db_name`; `host`/`port`/`user`/`password`/`dbname` also work).
Without `params` each SQL text is sent whole and every result it yields is read (PostgreSQL parses
it, so function bodies and `BEGIN ATOMIC` blocks are safe); with `params` the text is split into
statements and each gets the placeholders it uses (`%s`, `%(name)s`; a literal `%` in such a statement
is written `%%`). A failure rolls the attempt back. The time limit is enforced both by the server
(`statement_timeout`) and here. Errors carry `pg_code` (the SQLSTATE) and `code` `PG_<SQLSTATE>`, and by
SQLSTATE: class 42 → sql_syntax (42501 → auth), 23 (unique, foreign key, not null, check) →
db_constraint, 28 → auth, 08 and 57P01-03 → db_connection, 57014 (statement timeout), 55P03 and 25P03 →
db_timeout, 40 (deadlock, serialization failure) → db_deadlock, 53 → resource_exhausted, 22 → validation;
connect failures → db_connection (auth when the server refused the login, validation when the database
does not exist). db_connection, db_deadlock and db_timeout are retryable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.sql_split import pyformat_placeholders, split_sql, statement_at
from engine.tools.sql_tool import ParamBinder, SqlOutcome, params_of, sql_texts
from engine.tools.support import Attempt, ToolFailure, guarded

log = logging.getLogger(__name__)

_FIELDS = {"host": ("db_host", "host"), "port": ("db_port", "port"), "user": ("db_user", "user", "username"),
           "password": ("db_password", "password"), "dbname": ("db_name", "dbname", "database"),
           "sslmode": ("sslmode", "db_sslmode")}


class PostgresTool:
    kind = "postgres"

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        texts = sql_texts(attempt.config)
        binder = ParamBinder(params_of(attempt.config))
        conninfo = await _conninfo(attempt)
        limit = attempt.timeout
        options: dict[str, Any] = {}
        if limit:
            options["connect_timeout"] = max(2, int(limit))
            given = conninfo_to_dict(conninfo).get("options")
            options["options"] = f"{given or ''} -c statement_timeout={int(limit * 1000)}".strip()
        outcome = SqlOutcome()
        # the server's statement_timeout normally fires first (a clean 57014); this is the backstop
        async with asyncio.timeout(limit + 1.0 if limit else None):
            try:
                conn = await psycopg.AsyncConnection.connect(make_conninfo(conninfo, **options))
            except psycopg.Error as exc:
                raise _connect_failure(exc) from None
            try:
                async with conn:  # commits on success, rolls back on an exception, then closes
                    async with conn.cursor() as cursor:
                        await _execute_all(cursor, texts, binder, outcome)
            except _Failed as failed:
                raise _classify(failed.error, failed.where) from None
            except psycopg.Error as exc:  # at commit
                raise _classify(exc, "at commit") from None
        return outcome.envelope()


class _Failed(Exception):
    def __init__(self, error: psycopg.Error, where: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.where = where


async def _execute_all(cursor: psycopg.AsyncCursor[Any], texts: list[str], binder: ParamBinder,
                       outcome: SqlOutcome) -> None:
    if binder.params is None:
        for index, text in enumerate(texts, start=1):
            done = outcome.statement_count
            try:
                await cursor.execute(text)
            except psycopg.Error as exc:
                raise _Failed(exc, _where(text, index, done, exc)) from None
            while True:
                await _collect(cursor, outcome)
                if not cursor.nextset():
                    break
        return
    number = 0
    for text in texts:
        for statement in split_sql(text, "postgres"):
            number += 1
            positional, names = pyformat_placeholders(statement)
            args = binder.take(positional, names, statement=number)
            try:
                await cursor.execute(statement.text, args)
            except psycopg.Error as exc:
                raise _Failed(exc, f"statement {number}") from None
            await _collect(cursor, outcome)
    binder.finish()


def _where(text: str, index: int, done: int, exc: psycopg.Error) -> str:
    """Which statement failed, when PostgreSQL says where in the text (else which command)."""
    position = exc.diag.statement_position
    number = statement_at(text, int(position) - 1) if position else None
    if number is None and len(split_sql(text, "postgres")) == 1:
        number = 1
    return f"statement {done + number}" if number is not None else f"command {index}"


async def _collect(cursor: psycopg.AsyncCursor[Any], outcome: SqlOutcome) -> None:
    if cursor.description is None:
        outcome.add(affected=cursor.rowcount)  # -1 when the command changes no rows (DDL)
        return
    columns = [c.name for c in cursor.description]
    outcome.add(columns, await cursor.fetchall())


async def _conninfo(attempt: Attempt) -> str:
    config = attempt.config
    direct = config.get("connection_string") or config.get("dsn")
    if isinstance(direct, str) and direct:
        attempt.keep_secret(*_passwords(direct))
        return direct
    fields = await attempt.credential(config.get("auth"), tool="postgres")
    if not fields:
        raise ToolFailure("validation", "the postgres tool needs 'auth' (a credential name) or "
                                        "'connection_string'")
    base = fields.get("dsn") or fields.get("connection_string") or fields.get("url") or ""
    parts = {key: fields[name] for key, names in _FIELDS.items() for name in reversed(names)
             if fields.get(name) not in (None, "")}
    try:
        conninfo = make_conninfo(str(base), **{k: str(v) for k, v in parts.items()})
    except psycopg.ProgrammingError as exc:
        raise ToolFailure("validation", f"the postgres credential is not a valid connection: {exc}") from None
    attempt.keep_secret(*_passwords(conninfo))
    return conninfo


def _passwords(conninfo: str) -> list[str]:
    try:
        password = conninfo_to_dict(conninfo).get("password")
    except psycopg.Error:
        return []
    return [str(password)] if password else []


def _failure(kind: str, text: str, state: str | None, name: str, *,
             retryable: bool | None = None) -> ToolFailure:
    """A classified failure with NoETL's code (`PG_<SQLSTATE>`) and the SQLSTATE as `pg_code`."""
    return ToolFailure(kind, text, code=f"PG_{state}" if state else None, pg_code=state or None, type=name,
                       retryable=retryable)


def _connect_failure(exc: psycopg.Error) -> ToolFailure:
    text = str(exc).strip()
    lower = text.lower()
    name = type(exc).__name__
    state = exc.sqlstate
    if state and state.startswith("28") or any(
            s in lower for s in ("password authentication failed", "authentication failed",
                                 "no pg_hba.conf entry", "password is required",
                                 "no password supplied")):
        return _failure("auth", f"PostgreSQL refused the login: {text}", state, name)
    if state == "3D000" or ("database" in lower and "does not exist" in lower):
        return _failure("validation", f"PostgreSQL: {text}", state or "3D000", name)
    if "role" in lower and "does not exist" in lower:
        return _failure("auth", f"PostgreSQL refused the login: {text}", state, name)
    if isinstance(exc, psycopg.ProgrammingError):
        return _failure("validation", f"PostgreSQL connection settings are invalid: {text}", None, name)
    return _failure("db_connection", f"PostgreSQL could not be reached: {text}", state, name)


_CONNECTION_LOST = ("57P01", "57P02", "57P03")  # admin shutdown, crash shutdown, cannot connect now
_TIMED_OUT = ("57014", "55P03", "25P03")  # statement timeout (query canceled), lock timeout, idle timeout


def _classify(exc: psycopg.Error, where: str) -> ToolFailure:
    state = exc.sqlstate or ""
    name = type(exc).__name__
    text = f"{where}: {str(exc).strip()}"
    if state == "42501":
        return _failure("auth", text, state, name)
    if state.startswith("42"):
        return _failure("sql_syntax", text, state, name)
    if state.startswith("23"):
        return _failure("db_constraint", text, state, name)
    if state.startswith("28"):
        return _failure("auth", text, state, name)
    if state.startswith("08") or state in _CONNECTION_LOST or (
            not state and isinstance(exc, psycopg.OperationalError)):
        return _failure("db_connection", text, state, name)
    if state in _TIMED_OUT:
        return _failure("db_timeout", text, state, name)
    if state.startswith("40"):  # deadlock or serialization failure: the transaction may pass next time
        return _failure("db_deadlock", text, state, name)
    if state.startswith("53"):
        return _failure("resource_exhausted", text, state, name)
    if state.startswith("22"):
        return _failure("validation", text, state, name)
    return _failure("internal", text, state, name)
