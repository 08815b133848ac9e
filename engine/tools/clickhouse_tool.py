"""The clickhouse tool (spec 3.2): statements split here, sent one by one through clickhouse-connect.

The target is `url` (any clickhouse-connect DSN: `http(s)://user:pass@host:8123/db`, or `chdb://` /
`chdb:///a/dir` for the in-process chDB engine) or `auth`, a credential with `url`/`dsn` or
`host`/`port`/`username` (or `user`)/`password`/`database`/`secure`. Clients are kept per target and
closed with the tool (chDB allows one engine per process, so its client is also used one statement at
a time). Statements starting with SELECT/WITH/SHOW/DESCRIBE/EXPLAIN/EXISTS return rows; others run as
commands, whose `row_count` is the rows written as the server reports them (chDB reports none: 0).
`params` bind to `{name:Type}`, `%(name)s` or `%s` placeholders. The time limit is also sent as the
`max_execution_time` setting. ClickHouse has no multi-statement transactions: statements that
ran before a failure stay applied. Errors are classified by ClickHouse's error code (kept as `code`):
syntax and unknown names → sql_syntax, access → auth, time limit → db_timeout, too many queries →
rate_limit, network → db_connection, a violated constraint → db_constraint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver import exceptions as ch_errors
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.summary import QuerySummary

from engine.protocol.results import ResultEnvelope
from engine.tools.base import ToolCall
from engine.tools.sql_split import Statement, clickhouse_placeholders, split_sql
from engine.tools.sql_tool import ParamBinder, Params, SqlOutcome, params_of, sql_texts
from engine.tools.support import Attempt, ToolFailure, guarded, run_in_thread

log = logging.getLogger(__name__)

_ROW_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
_CODE = re.compile(r"Code:\s*(\d+)")
_CODE_KINDS: dict[str, frozenset[int]] = {
    "sql_syntax": frozenset({62, 60, 47, 46, 81, 16, 57, 43, 53, 386, 215, 352, 36, 44, 10, 8}),
    "auth": frozenset({516, 192, 193, 194, 497, 164}),
    "db_timeout": frozenset({159, 394}),
    "resource_exhausted": frozenset({241, 173, 290}),
    "rate_limit": frozenset({202, 203}),
    "db_connection": frozenset({209, 210, 1000}),
    "validation": frozenset({6, 26, 27, 41, 69, 70, 72, 153, 117, 131, 33}),
    "db_constraint": frozenset({469}),
}


class ClickhouseTool:
    kind = "clickhouse"

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], tuple[Client, threading.Lock]] = {}
        self._guard = asyncio.Lock()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client, _ in clients:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(client.close)

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        texts = sql_texts(attempt.config)
        params = params_of(attempt.config)
        statements = [s for text in texts for s in split_sql(text, "clickhouse")]
        client, lock = await self._client(attempt)
        limit = attempt.timeout
        work = run_in_thread(_execute, client, lock, statements, params, limit)
        async with asyncio.timeout(limit):
            outcome = await asyncio.shield(work)
        return outcome.envelope()

    async def _client(self, attempt: Attempt) -> tuple[Client, threading.Lock]:
        target = await _target(attempt)
        key = tuple(sorted(target.items()))
        async with self._guard:
            if key not in self._clients:
                try:
                    client = await asyncio.to_thread(_connect, target)
                except ch_errors.Error as exc:
                    raise _classify(exc, 0) from None
                self._clients[key] = (client, threading.Lock())
            return self._clients[key]


async def _target(attempt: Attempt) -> dict[str, Any]:
    config = attempt.config
    url = config.get("url")
    if isinstance(url, str) and url:
        attempt.keep_secret(*_dsn_password(url))
        return {"dsn": url}
    fields = await attempt.credential(config.get("auth"), tool="clickhouse")
    if not fields:
        raise ToolFailure("validation", "the clickhouse tool needs 'url' (for example chdb:// or "
                                        "http://host:8123) or 'auth' (a credential name)")
    dsn = fields.get("url") or fields.get("dsn")
    if isinstance(dsn, str) and dsn:
        attempt.keep_secret(*_dsn_password(dsn))
        return {"dsn": dsn}
    target: dict[str, Any] = {}
    for key, names in {"host": ("host", "db_host"), "port": ("port", "db_port"),
                       "username": ("username", "user", "db_user"),
                       "password": ("password", "db_password"), "database": ("database", "db_name"),
                       "secure": ("secure",)}.items():
        for name in names:
            if fields.get(name) not in (None, ""):
                target[key] = fields[name]
                break
    if "host" not in target:
        raise ToolFailure("validation", "the clickhouse credential needs 'url'/'dsn' or 'host'")
    if "port" in target:
        target["port"] = int(target["port"])
    return target


def _dsn_password(dsn: str) -> list[str]:
    with contextlib.suppress(ValueError):
        password = urlsplit(dsn).password
        if password:
            return [password, unquote(password)]
    return []


def _connect(target: Mapping[str, Any]) -> Client:
    return clickhouse_connect.get_client(**target)


def _execute(client: Client, lock: threading.Lock, statements: list[Statement], params: Params | None,
             limit: float | None) -> SqlOutcome:
    binder = ParamBinder(params)
    outcome = SqlOutcome()
    settings = {"max_execution_time": max(1, int(limit))} if limit else None
    with lock:
        for number, statement in enumerate(statements, start=1):
            positional, names = clickhouse_placeholders(statement)
            args = binder.take(positional, names, statement=number)
            try:
                if statement.keyword in _ROW_KEYWORDS:
                    result = client.query(statement.text, parameters=args, settings=settings)
                    outcome.add(list(result.column_names), result.result_rows)
                else:
                    answer = client.command(statement.text, parameters=args, settings=settings)
                    outcome.add(affected=answer.written_rows if isinstance(answer, QuerySummary) else 0)
            except ch_errors.Error as exc:
                raise _classify(exc, number) from None
    binder.finish()
    return outcome


def _classify(exc: ch_errors.Error, statement: int) -> ToolFailure:
    name = type(exc).__name__
    text = str(exc).strip()
    if statement:
        text = f"statement {statement}: {text}"
    match = _CODE.search(str(exc))
    code = int(match.group(1)) if match else None
    if code is not None:
        for kind, codes in _CODE_KINDS.items():
            if code in codes:
                return ToolFailure(kind, text, code=code, type=name)
        return ToolFailure("internal", text, code=code, type=name)
    if isinstance(exc, ch_errors.OperationalError):
        return ToolFailure("db_connection", text, type=name)
    if isinstance(exc, (ch_errors.ProgrammingError, ch_errors.DataError)):
        return ToolFailure("validation", text, type=name)
    return ToolFailure("internal", text, type=name)
