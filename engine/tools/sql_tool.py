"""What the SQL tools share (spec 3.2): the statements of a call, their bound parameters, the result shape.

Each tool folds its statements into a `SqlOutcome` as they run; the result is the shared mapping of
`engine.protocol.sql_result` (`rows`, `row_count`, `columns`, `statement_count`, `command_<i>`), rows as
objects keyed by column name with JSON-friendly values (see `engine.tools.values`). `command` is a string
(possibly several statements) or a list of them; `script: {uri}` reads the SQL from a local file.
`params` are bound, never spliced: a mapping gives each statement the names it uses; a list is consumed
in order by the statements' positional placeholders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.protocol.results import ResultEnvelope
from engine.protocol.sql_result import StatementResult, sql_result
from engine.tools.support import ToolFailure, read_script
from engine.tools.values import to_json_value

Params = Mapping[str, Any] | Sequence[Any]


def sql_texts(config: Mapping[str, Any]) -> list[str]:
    """The SQL texts of the call, in order (each may hold several statements)."""
    command = config.get("command")
    if command is None:
        for alias in ("commands", "query", "sql"):
            if config.get(alias) is not None:
                command = config[alias]
                break
    script = config.get("script")
    if command is None and script is not None:
        uri = script.get("uri") if isinstance(script, Mapping) else script
        command = read_script(uri)[0]
    if isinstance(command, str):
        texts = [command]
    elif isinstance(command, list) and all(isinstance(c, str) for c in command):
        texts = list(command)
    else:
        raise ToolFailure("validation", "a SQL tool needs 'command': a SQL string or a list of them "
                                        "(or 'script: {uri}')")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ToolFailure("validation", "the SQL command is empty")
    return texts


def params_of(config: Mapping[str, Any]) -> Params | None:
    params = config.get("params")
    if isinstance(params, str):
        try:
            params = json.loads(params) if params.strip() else None
        except ValueError:
            raise ToolFailure("validation", "params must be a mapping or a list, got text that is not "
                                            "JSON") from None
    if params is None or isinstance(params, (Mapping, list, tuple)):
        return params
    raise ToolFailure("validation", f"params must be a mapping or a list, got {type(params).__name__}")


class ParamBinder:
    """Hands each statement the parameters its placeholders need."""

    def __init__(self, params: Params | None) -> None:
        self.params = params
        self._next = 0

    def take(self, positional: int, names: Iterable[str], *, statement: int) -> Any:
        names = sorted(set(names))
        if not positional and not names:
            return None
        if self.params is None:
            raise ToolFailure("validation", f"statement {statement} has placeholders but the tool has no "
                                            "'params'")
        if isinstance(self.params, Mapping):
            if positional:
                raise ToolFailure("validation", f"statement {statement} uses positional placeholders; "
                                                "give 'params' as a list")
            missing = [n for n in names if n not in self.params]
            if missing:
                raise ToolFailure("validation", f"statement {statement} uses parameter(s) "
                                                f"{', '.join(missing)} that 'params' does not have "
                                                f"(it has: {', '.join(map(str, self.params)) or 'none'})")
            return {n: self.params[n] for n in names}
        if names:
            raise ToolFailure("validation", f"statement {statement} uses named placeholders "
                                            f"({', '.join(names)}); give 'params' as a mapping")
        chunk = list(self.params[self._next:self._next + positional])
        if len(chunk) < positional:
            raise ToolFailure("validation", f"the statements use more positional placeholders than the "
                                            f"{len(self.params)} value(s) in 'params'")
        self._next += positional
        return chunk

    def finish(self) -> None:
        if isinstance(self.params, (list, tuple)) and self.params and self._next != len(self.params):
            raise ToolFailure("validation", f"'params' has {len(self.params)} value(s) but the statements "
                                            f"use {self._next} positional placeholder(s)")


@dataclass
class SqlOutcome:
    """What the statements of one attempt produced, folded as they run."""

    statements: list[StatementResult] = field(default_factory=list)

    @property
    def statement_count(self) -> int:
        return len(self.statements)

    def add(self, columns: Sequence[str] | None = None, rows: Iterable[Sequence[Any]] | None = None, *,
            affected: int | None = None) -> None:
        """Record one executed statement: its row set (`columns` None when it returned none), else the
        number of rows it changed."""
        if columns is None:
            self.statements.append(StatementResult(affected=affected or 0))
            return
        names = [str(c) for c in columns]
        converted = [dict(zip(names, (to_json_value(v, strict=False) for v in row), strict=False))
                     for row in rows or ()]
        self.statements.append(StatementResult(names, converted))

    def envelope(self, **meta: Any) -> ResultEnvelope:
        return ResultEnvelope.ok(sql_result(self.statements), **meta)
