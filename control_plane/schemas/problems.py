"""The error document of every failed request: RFC 9457 problem+json with NoETL's what/where/fix."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LocatedError(BaseModel):
    """A playbook error placed in its YAML."""

    line: int
    column: int
    code: str
    path: str
    message: str


class FieldError(BaseModel):
    """A part of a request that does not match its schema."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "type": "https://noetl.dev/problems/not_found", "title": "Not Found", "status": 404,
        "detail": "execution 'x' is not stored", "code": "not_found", "where": "executions",
        "fix": "check the id (list executions to see the stored ones)"}})

    type: str
    title: str
    status: int
    detail: str
    code: str
    where: str | None = None
    fix: str | None = None
    errors: list[LocatedError | FieldError] | None = None
