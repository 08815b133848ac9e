"""The result envelope every tool attempt ends in (spec section 9), and the error vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

# NoETL's names where NoETL has one (HTTP and database causes), ours for the rest (spec 9)
ErrorKind = Literal[
    "timeout", "connection", "rate_limit", "auth", "not_found", "client_error", "server_error",
    "db_connection", "db_constraint", "db_deadlock", "db_timeout", "parse",
    "missing_credential", "sql_syntax", "undefined_variable", "python_exception", "resource_exhausted",
    "cancelled", "validation", "contract", "internal",
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)
RETRYABLE_BY_DEFAULT = frozenset({"timeout", "connection", "rate_limit", "server_error", "db_connection",
                                  "db_deadlock", "db_timeout"})
HTTP_RESULT_KEYS = ("status_code", "headers", "url", "elapsed_ms", "data")


def http_error_kind(status: int) -> tuple[str, bool]:
    """(kind, retryable) of an HTTP error status (spec 9): 429 and 5xx are worth another try."""
    if status == 429:
        return "rate_limit", True
    if status in (401, 403):
        return "auth", False
    if status == 404:
        return "not_found", False
    if status >= 500:
        return "server_error", True
    return "client_error", status == 408


def is_http_result(value: Any) -> bool:
    """Whether `value` has the http tool's result shape (spec 3). On every envelope's way in and out:
    `dict` (not the Mapping ABC, whose isinstance is slow) and the rarest key first."""
    return isinstance(value, dict) and "elapsed_ms" in value and all(key in value for key in HTTP_RESULT_KEYS)


def fold_body_alias(value: Any) -> Any:
    """An http result without its `body` when that is the same value as `data`: how it is stored, once."""
    if is_http_result(value) and "body" in value and (value["body"] is value["data"]
                                                      or value["body"] == value["data"]):
        return {k: v for k, v in value.items() if k != "body"}
    return value


def unfold_body_alias(value: Any) -> Any:
    """An http result with `body` restored as the same object as `data` (stored once, read as both)."""
    if is_http_result(value) and "body" not in value:
        return {**value, "body": value["data"]}
    return value


# revision 1's names, still in event logs recorded before revision 2: read as today's kinds
_RENAMED = frozenset({"rate_limited", "sql_constraint", "http_status"})


def _renamed(error: Mapping[str, Any]) -> dict[str, Any]:
    kind = error["kind"]
    if kind == "rate_limited":
        return {**error, "kind": "rate_limit"}
    if kind == "sql_constraint":
        return {**error, "kind": "db_constraint"}
    code = error.get("code")
    status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
    if status is None:
        return {**error, "kind": "client_error"}
    return {**error, "kind": http_error_kind(status)[0], "http_status": error.get("http_status") or status}


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolError(WireModel):
    """A classified failure. `code` is the tool's own code (`HTTP_429`, `PG_23505`); `source` the tool
    kind; HTTP errors carry `http_status` and its alias `status`, and `retry_after` in seconds;
    database errors carry `pg_code`, the SQLSTATE."""

    kind: ErrorKind
    message: str
    retryable: bool = False
    code: str | int | None = None
    type: str | None = None
    traceback: str | None = None
    source: str | None = None
    http_status: int | None = None
    status: int | None = None
    retry_after: float | None = None
    pg_code: str | None = None
    step: str | None = None  # an execution's error: the step whose failure ended it

    @model_validator(mode="before")
    @classmethod
    def _status_alias(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        if value.get("kind") in _RENAMED:
            value = _renamed(value)
        http_status, status = value.get("http_status"), value.get("status")
        if http_status is not None and status is not None and http_status != status:
            raise ValueError(f"http_status {http_status} and status {status} must be the same HTTP status "
                             "(status is an alias of http_status)")
        if (http_status is None) != (status is None):
            value = {**value, "http_status": http_status if http_status is not None else status,
                     "status": status if status is not None else http_status}
        return value


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

    # `task_results` (a pipeline's results by task) are stored with an http result's body once too:
    # the step runner folds them, and result handles read `body` as `data` (engine/dsl/results.py)


def engine_error(kind: str, message: str) -> ToolError:
    """An error the engine decides itself (a template, a limit, a cancel): never worth a retry.
    ValueError when `kind` is not an error kind of spec section 9."""
    return ToolError.model_validate({"kind": kind, "message": message})


class ResultEnvelope(WireModel):
    """One attempt's outcome. An http result's `body` is `data` again: JSON carries it once, and reading
    the JSON back restores it (so events and commands do not carry the body twice)."""

    status: Literal["ok", "error"]
    data: Any = None
    ref: ResultRef | None = None
    error: ToolError | None = None
    meta: ResultMeta = Field(default_factory=ResultMeta)

    @field_validator("data", mode="before")
    @classmethod
    def _unfold(cls, value: Any) -> Any:
        return unfold_body_alias(value)

    @field_serializer("data", when_used="json")
    def _fold(self, value: Any) -> Any:
        return fold_body_alias(value)

    @classmethod
    def ok(cls, data: Any = None, **meta: Any) -> ResultEnvelope:
        return cls(status="ok", data=data, meta=ResultMeta(**meta))

    @classmethod
    def fail(cls, kind: str, message: str, *, retryable: bool | None = None, data: Any = None,
             code: str | int | None = None, type: str | None = None, traceback: str | None = None,
             source: str | None = None, http_status: int | None = None, retry_after: float | None = None,
             pg_code: str | None = None, **meta: Any) -> ResultEnvelope:
        error = ToolError(kind=kind, message=message,  # type: ignore[arg-type]
                          retryable=kind in RETRYABLE_BY_DEFAULT if retryable is None else retryable,
                          code=code, type=type, traceback=traceback, source=source,
                          http_status=http_status, retry_after=retry_after, pg_code=pg_code)
        return cls(status="error", data=data, error=error, meta=ResultMeta(**meta))

    def with_source(self, source: str) -> ResultEnvelope:
        """This envelope with `error.source` set to the tool kind, unless the tool set it."""
        if self.error is None or self.error.source is not None:
            return self
        return self.model_copy(update={"error": self.error.model_copy(update={"source": source})})
