"""Executions' requests and answers: execute, list, one with its steps, events, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from control_plane.schemas.base import RequestModel
from engine.protocol.events import Event
from engine.protocol.ids import as_int

MAX_VERSION = 2**31 - 1  # the catalog's version column is an integer
MAX_SEQ = 2**63 - 1  # seq is a bigint
ExecutionStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
ID_TEXT = ("the execution id: a positive 64-bit integer, time-ordered, as a string of its decimal digits "
           "(JSON numbers lose digits past 2**53 in many clients)")


class ExecuteRequest(RequestModel):
    path: str = Field(min_length=1, max_length=1000, description="the catalog path")
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION, description="default: the latest")
    payload: dict[str, Any] | None = Field(
        default=None, description="deep-merged into the playbook's workload")
    merge: bool | None = Field(default=None, description="accepted for NoETL compatibility; false is "
                                                         "refused (replacing the workload is not supported)")
    execution_id: str | None = Field(
        default=None, min_length=19, max_length=19, examples=["2241043291894150228"],
        description="an id the client chose (engine.protocol.ids, spec 13), so that sending the request "
                    "again after its answer was lost starts the execution once; default: a new one")

    @field_validator("execution_id")
    @classmethod
    def _an_id(cls, value: str | None) -> str | None:
        if value is not None and as_int(value) is None:
            raise ValueError(f"'{value}' is not an execution id: 19 decimal digits of a positive 64-bit "
                             "integer (make one with engine.protocol.ids.new_execution_id, or omit it)")
        return value

    @field_validator("payload", mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            kind = _JSON_TYPES.get(type(value), type(value).__name__)
            raise ValueError(f"the payload must be a JSON object (it is merged into the workload), "
                             f"got {kind}")
        return value


class Started(BaseModel):
    execution_id: str = Field(description=ID_TEXT, examples=["2241043291894150228"])
    path: str
    version: int
    status: str


class ExecutionInfo(BaseModel):
    execution_id: str = Field(description=ID_TEXT, examples=["2241043291894150228"])
    path: str
    version: int
    status: str
    payload: dict[str, Any]
    parent_execution_id: str | None
    parent_step: str | None
    last_seq: int
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None


class StepState(BaseModel):
    status: str
    result: Any = None
    error: Any = None
    attempts: int = 0
    stats: dict[str, Any] | None = None


class ExecutionDetail(ExecutionInfo):
    trace_id: str | None = Field(default=None, description="the execution's OpenTelemetry trace id "
                                 "(docs/insights.md, Tracing): derived from its id")
    result: Any = None
    error: Any = None
    steps: dict[str, StepState]


class ExecutionPage(BaseModel):
    items: list[ExecutionInfo]
    next_cursor: str | None = Field(description="pass back as `cursor` for the next page; null on the last")


class EventPage(BaseModel):
    items: list[Event]
    next_after_seq: int | None = Field(description="pass back as `after_seq`; null when no more are stored")


class Cancelling(BaseModel):
    execution_id: str
    status: Literal["cancelling"]
