"""The snowflake tool (spec 3.2) over the official connector, an optional extra (`noetl[snowflake]`).

Without the connector installed the step fails with a validation error saying how to install it; it is
never skipped. `auth` names a credential with `account`, `user` (or `username`), and `password` or
another authenticator's fields (`authenticator`, `token`, `private_key_file`...), plus optional
`warehouse`, `database`, `schema`, `role`. Statements are split here and run in order in one
transaction (committed at the end, rolled back on failure), in a thread; `params` bind to `%s` /
`%(name)s`. Errors keep Snowflake's error number as `code` and its SQLSTATE as `pg_code`: 1003 and other
1xxx/2xxx compilation errors → sql_syntax, 390100/390144/250001-style login failures → auth, integrity
errors → db_constraint, connection problems → db_connection, 604 (cancelled) → db_timeout, a deadlock →
db_deadlock.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from types import ModuleType
from typing import Any

from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.sql_split import Statement, pyformat_placeholders, split_sql
from engine.tools.sql_tool import ParamBinder, Params, SqlOutcome, params_of, sql_texts
from engine.tools.support import Attempt, ToolFailure, guarded, run_in_thread

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'noetl[snowflake]'"
_CONNECT_KEYS = ("account", "user", "password", "warehouse", "database", "schema", "role", "authenticator",
                 "token", "private_key_file", "private_key_file_pwd", "host", "region", "login_timeout")


def load_connector() -> ModuleType:
    """`snowflake.connector`, or a validation failure that says how to install it."""
    try:
        return importlib.import_module("snowflake.connector")
    except ImportError as exc:
        raise ToolFailure("validation", f"the snowflake tool needs the Snowflake connector, which is not "
                                        f"installed ({exc}); install it with: {INSTALL_HINT}",
                          code="driver_missing") from None


class SnowflakeTool:
    kind = "snowflake"

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        connector = load_connector()
        texts = sql_texts(attempt.config)
        params = params_of(attempt.config)
        statements = [s for text in texts for s in split_sql(text, "snowflake")]
        fields = await attempt.credential(attempt.config.get("auth"), tool="snowflake")
        if not fields:
            raise ToolFailure("validation", "the snowflake tool needs 'auth' (a credential name)")
        settings = {k: fields[k] for k in _CONNECT_KEYS if fields.get(k) not in (None, "")}
        if "user" not in settings and fields.get("username"):
            settings["user"] = fields["username"]
        if "account" not in settings:
            raise ToolFailure("validation", "the snowflake credential needs 'account'")
        limit = attempt.timeout
        async with asyncio.timeout(limit):
            work = run_in_thread(_execute, connector, settings, statements, params, limit)
            return await asyncio.shield(work)


def _execute(connector: ModuleType, settings: dict[str, Any], statements: list[Statement],
             params: Params | None, limit: float | None) -> ResultEnvelope:
    errors = connector.errors
    binder = ParamBinder(params)
    outcome = SqlOutcome()
    number = 0
    try:
        conn = connector.connect(autocommit=False, **settings)
    except errors.Error as exc:
        raise _classify(exc, 0, errors) from None
    try:
        with conn.cursor() as cursor:
            for number, statement in enumerate(statements, start=1):
                positional, names = pyformat_placeholders(statement)
                args = binder.take(positional, names, statement=number)
                cursor.execute(statement.text, args, timeout=int(limit) if limit else None)
                if cursor.description:
                    outcome.add([d[0] for d in cursor.description], cursor.fetchall())
                else:
                    outcome.add(affected=cursor.rowcount or 0)
        binder.finish()
        conn.commit()
    except errors.Error as exc:
        conn.rollback()
        raise _classify(exc, number, errors) from None
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return outcome.envelope()


def _classify(exc: Exception, statement: int, errors: ModuleType) -> ToolFailure:
    name = type(exc).__name__
    errno = getattr(exc, "errno", None)
    state = getattr(exc, "sqlstate", None) or None
    text = f"statement {statement}: {exc}" if statement else str(exc)
    lower = str(exc).lower()

    def failure(kind: str) -> ToolFailure:
        return ToolFailure(kind, text, code=errno, type=name, pg_code=str(state) if state else None)

    if errno in (390100, 390144, 390318, 250001) or "incorrect username or password" in lower:
        return failure("auth")
    if errno == 604:
        return failure("db_timeout")
    if "deadlock" in lower:
        return failure("db_deadlock")
    if isinstance(exc, errors.ProgrammingError) and errno is not None and 1000 <= errno < 3000:
        return failure("sql_syntax")
    if isinstance(exc, errors.IntegrityError):
        return failure("db_constraint")
    if isinstance(exc, (errors.OperationalError, errors.InterfaceError)):
        return failure("db_connection")
    if isinstance(exc, errors.DataError):
        return failure("validation")
    return failure("internal")
