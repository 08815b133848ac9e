"""The result envelope every tool attempt ends in (spec section 9), and the error vocabulary."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ErrorKind = Literal[
    "timeout", "connection", "http_status", "rate_limited", "auth", "missing_credential",
    "sql_syntax", "sql_constraint", "undefined_variable", "python_exception", "resource_exhausted",
    "cancelled", "validation", "internal",
]
ERROR_KINDS: tuple[str, ...] = ErrorKind.__args__  # type: ignore[attr-defined]
RETRYABLE_BY_DEFAULT = frozenset({"timeout", "connection", "rate_limited"})


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolError(WireModel):
    kind: ErrorKind
    message: str
    retryable: bool = False
    code: str | int | None = None
    type: str | None = None
    traceback: str | None = None


class ResultRef(WireModel):
    """Data stored outside the event stream (spec section 9)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    uri: str
    size: int
    format: Literal["arrow", "parquet", "json"]
    row_count: int | None = None
    schema_: dict[str, str] | None = Field(default=None, alias="schema")
    preview: Any = None


class ResultMeta(WireModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    duration_ms: float = 0.0
    attempt: int = 1
    worker: str | None = None
    pool: str | None = None


class ResultEnvelope(WireModel):
    status: Literal["ok", "error"]
    data: Any = None
    ref: ResultRef | None = None
    error: ToolError | None = None
    meta: ResultMeta = Field(default_factory=ResultMeta)

    @classmethod
    def ok(cls, data: Any = None, **meta: Any) -> ResultEnvelope:
        return cls(status="ok", data=data, meta=ResultMeta(**meta))

    @classmethod
    def fail(cls, kind: str, message: str, *, retryable: bool | None = None, data: Any = None,
             code: str | int | None = None, type: str | None = None, traceback: str | None = None,
             **meta: Any) -> ResultEnvelope:
        error = ToolError(kind=kind, message=message,  # type: ignore[arg-type]
                          retryable=kind in RETRYABLE_BY_DEFAULT if retryable is None else retryable,
                          code=code, type=type, traceback=traceback)
        return cls(status="error", data=data, error=error, meta=ResultMeta(**meta))
