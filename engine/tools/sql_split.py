"""SQL text → statements, for the SQL tools (spec 3.2): a small lexer that knows where `;` is not a separator.

It skips `--` and (nested) `/* */` comments, '…' strings (doubled quotes; backslash escapes in E'…' for
PostgreSQL and in every string for ClickHouse and Snowflake), "…" identifiers, `…` identifiers
(ClickHouse) and $tag$…$tag$ bodies (PostgreSQL, DuckDB, Snowflake). Each statement keeps its text as
written and a `code` twin of equal length where comments and literals are blanked, which is what
keyword and placeholder detection read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["postgres", "duckdb", "clickhouse", "snowflake"]
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_KEYWORD = re.compile(r"^[\s(]*([A-Za-z]+)")
_PYFORMAT = re.compile(r"%(?:%|\((?P<name>[^)]+)\)[sbt]|(?P<pos>[sbt]))")
_CH_BINDING = re.compile(r"\{\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*[^{}]+\}")


@dataclass(frozen=True, slots=True)
class Statement:
    text: str  # as written, comments included, without the terminating ';'
    code: str  # the same text with comments and literals blanked
    start: int = 0  # where `text` begins in the SQL it was split from

    @property
    def keyword(self) -> str:
        """The statement's first word, upper-cased (SELECT, INSERT, WITH, ...)."""
        match = _KEYWORD.match(self.code)
        return match.group(1).upper() if match else ""


def _ident(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _quoted_end(sql: str, i: int, quote: str, backslash: bool) -> int:
    j, n = i + 1, len(sql)
    while j < n:
        ch = sql[j]
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _block_comment_end(sql: str, i: int) -> int:
    depth, j, n = 0, i, len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth += 1
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


def _skip(sql: str, i: int, dialect: Dialect) -> int:
    """The end of the comment or literal starting at `i`, or `i` when none starts there."""
    ch = sql[i]
    if ch == "-" and sql.startswith("--", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end
    if ch == "/" and sql.startswith("/*", i):
        return _block_comment_end(sql, i)
    if ch == "'":
        escaped = dialect in ("clickhouse", "snowflake") or (
            dialect == "postgres" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _ident(sql[i - 2])))
        return _quoted_end(sql, i, "'", escaped)
    if ch == '"':
        return _quoted_end(sql, i, '"', dialect == "clickhouse")
    if ch == "`" and dialect == "clickhouse":
        return _quoted_end(sql, i, "`", True)
    if ch == "$" and dialect != "clickhouse" and (i == 0 or not _ident(sql[i - 1])):
        match = _DOLLAR_TAG.match(sql, i)
        if match:
            end = sql.find(match.group(0), match.end())
            return len(sql) if end < 0 else end + len(match.group(0))
    return i


def split_sql(sql: str, dialect: Dialect = "postgres") -> list[Statement]:
    """The statements of `sql` in order; empty ones (only blanks or comments) are dropped."""
    statements: list[Statement] = []
    code: list[str] = []
    start = i = 0
    n = len(sql)

    def emit(end: int) -> None:
        text, masked = sql[start:end], "".join(code[start:end])
        if masked.strip():
            lead = len(text) - len(text.lstrip())
            trail = len(text.rstrip())
            statements.append(Statement(text[lead:trail], masked[lead:trail], start + lead))

    while i < n:
        end = _skip(sql, i, dialect)
        if end > i:
            code.extend(" " if c not in "\n" else c for c in sql[i:end])
            i = end
            continue
        if sql[i] == ";":
            emit(i)
            code.append(" ")
            start = i + 1
        else:
            code.append(sql[i])
        i += 1
    emit(n)
    return statements


def statement_at(sql: str, offset: int, dialect: Dialect = "postgres") -> int | None:
    """The 1-based number of the statement of `sql` that holds character `offset` (0-based)."""
    number = None
    for index, statement in enumerate(split_sql(sql, dialect), start=1):
        if statement.start <= offset:
            number = index
    return number


def pyformat_placeholders(statement: Statement) -> tuple[int, set[str]]:
    """(positional count, names) of `%s` / `%(name)s` placeholders (psycopg, clickhouse-connect,
    snowflake)."""
    positional, names = 0, set()
    for match in _PYFORMAT.finditer(statement.code):
        if match.group("name"):
            names.add(match.group("name"))
        elif match.group("pos"):
            positional += 1
    return positional, names


def clickhouse_placeholders(statement: Statement) -> tuple[int, set[str]]:
    """Like `pyformat_placeholders`, plus ClickHouse server-side bindings `{name:Type}`."""
    positional, names = pyformat_placeholders(statement)
    names |= {m.group("name") for m in _CH_BINDING.finditer(statement.code)}
    return positional, names
