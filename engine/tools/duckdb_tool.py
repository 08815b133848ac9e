"""The duckdb tool (spec 3.2): statements split by DuckDB's own parser, run in a thread off the event loop.

`database` is a file path or `:memory:` (the default: a fresh database per attempt). Statements run in
autocommit, in order; `params` bind to `?`, `$1` or `$name` placeholders (DuckDB reports which each
statement uses). The `Count` row DuckDB answers for INSERT/UPDATE/DELETE/CREATE is the statement's
`row_count` (rows changed), not rows returned, and the `Success` column of DROP is no row set either;
`RETURNING` rows are rows. When the time limit passes the query is interrupted. `auth` (attaching other
databases with credentials) is not supported yet and fails the step with a validation error.
Errors: parser/binder/catalog → sql_syntax, constraint → db_constraint, a file that cannot be parsed
(malformed JSON or CSV, not Parquet) → parse, conversion/other invalid input → validation, out of memory
→ resource_exhausted, interrupted at the time limit → db_timeout, a write-write conflict → db_deadlock
(retryable), the database file locked by another process → db_connection (retryable), other I/O →
validation, remote files over HTTP → connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import duckdb

from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.sql_tool import ParamBinder, Params, SqlOutcome, params_of, sql_texts
from engine.tools.support import Attempt, ToolFailure, guarded, run_in_thread

log = logging.getLogger(__name__)

_ROW_STATEMENTS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL", "EXECUTE", "RELATION", "ANALYZE",
                             "LOGICAL_PLAN"})
_INTERRUPT_WAIT_S = 10.0


class DuckdbTool:
    kind = "duckdb"

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        config = attempt.config
        texts = sql_texts(config)
        params = params_of(config)
        if config.get("auth"):
            raise ToolFailure("validation", "the duckdb tool does not support 'auth' (attached sources) "
                                            "yet; attach them in SQL or use the postgres tool")
        database = str(config.get("database") or ":memory:")
        try:
            con = await asyncio.to_thread(duckdb.connect, database)
        except duckdb.Error as exc:
            raise _classify(exc, 0) from None
        work = run_in_thread(_execute, con, texts, params)
        try:
            async with asyncio.timeout(attempt.timeout):
                outcome = await asyncio.shield(work)
        except (TimeoutError, asyncio.CancelledError):
            con.interrupt()
            await asyncio.wait([work], timeout=_INTERRUPT_WAIT_S)
            raise
        except _Failed as failed:
            raise _classify(failed.error, failed.statement) from None
        finally:
            if work.done():
                await asyncio.to_thread(con.close)
            else:  # still running after the interrupt: close it when it finally stops
                work.add_done_callback(lambda _: _quiet_close(con))
        return outcome.envelope()


class _Failed(Exception):
    def __init__(self, error: duckdb.Error, statement: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.statement = statement


def _quiet_close(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        con.close()


def _execute(con: duckdb.DuckDBPyConnection, texts: list[str], params: Params | None) -> SqlOutcome:
    binder = ParamBinder(params)
    outcome = SqlOutcome()
    number = 0
    try:
        for text in texts:
            for statement in con.extract_statements(text):
                number += 1
                names = set(statement.named_parameters)
                positional = 0
                if names and all(n.isdigit() for n in names):
                    positional, names = max(int(n) for n in names), set()
                args = binder.take(positional, names, statement=number)
                con.execute(statement, args)
                description = con.description
                columns = [d[0] for d in description] if description else None
                if columns is None:
                    outcome.add()
                elif statement.type.name not in _ROW_STATEMENTS and columns in (["Count"], ["Success"]):
                    status = con.fetchall()  # [(rows changed,)], or [] for DDL
                    changed = status[0][0] if columns == ["Count"] and status else 0
                    outcome.add(affected=int(changed or 0))
                else:
                    outcome.add(columns, con.fetchall())
        binder.finish()
    except duckdb.Error as exc:
        raise _Failed(exc, number) from None
    return outcome


_UNPARSABLE = re.compile(r"malformed|cannot parse|could not parse|CSV Error|sniff|not a parquet|"
                         r"too small to be a parquet", re.IGNORECASE)


def _classify(exc: duckdb.Error, statement: int) -> ToolFailure:
    name = type(exc).__name__
    where = f"statement {statement}: " if statement else ""
    text = f"{where}{str(exc).strip()}"
    kinds: list[tuple[type[Any] | tuple[type[Any], ...], str]] = [
        ((duckdb.ParserException, duckdb.SyntaxException, duckdb.BinderException,
          duckdb.CatalogException), "sql_syntax"),
        ((duckdb.ConstraintException, duckdb.IntegrityError), "db_constraint"),
        (duckdb.InterruptException, "db_timeout"),
        (duckdb.OutOfMemoryException, "resource_exhausted"),
        (duckdb.PermissionException, "auth"),
        ((duckdb.ConversionException, duckdb.InvalidInputException, duckdb.DataError,
          duckdb.OutOfRangeException, duckdb.TypeMismatchException), "validation"),
        (duckdb.HTTPException, "connection"),
    ]
    if isinstance(exc, duckdb.InvalidInputException) and _UNPARSABLE.search(str(exc)):
        return ToolFailure("parse", text, type=name)
    if isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower():
        return ToolFailure("db_deadlock", text, type=name)
    for classes, kind in kinds:
        if isinstance(exc, classes):
            return ToolFailure(kind, text, type=name)
    if isinstance(exc, duckdb.IOException):
        if "lock" in str(exc).lower():
            return ToolFailure("db_connection", text, type=name)
        return ToolFailure("validation", text, type=name)
    return ToolFailure("internal", text, type=name)
