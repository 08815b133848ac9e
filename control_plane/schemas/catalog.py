"""The catalog's requests and answers: register, list, get, versions, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from control_plane.schemas.base import RequestModel


class RegisterRequest(RequestModel):
    """The JSON form of a registration: the YAML base64-encoded (NoETL's shape) or as text."""

    content: str | None = Field(default=None, description="the playbook's YAML, base64-encoded")
    content_text: str | None = Field(default=None, description="the playbook's YAML as text")

    @model_validator(mode="after")
    def _one_of(self) -> RegisterRequest:
        if (self.content is None) == (self.content_text is None):
            raise ValueError("send exactly one of 'content' (base64 YAML) and 'content_text' (YAML)")
        return self


# the request body as OpenAPI sees it (the route reads the body itself: YAML or JSON)
REGISTER_JSON_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "object", "title": "Base64", "additionalProperties": False, "required": ["content"],
         "properties": {"content": {"type": "string", "contentEncoding": "base64",
                                    "description": "the playbook's YAML, base64-encoded"}}},
        {"type": "object", "title": "Text", "additionalProperties": False, "required": ["content_text"],
         "properties": {"content_text": {"type": "string", "description": "the playbook's YAML"}}},
    ]}


class Diagnostic(BaseModel):
    line: int
    column: int
    code: str
    path: str
    message: str


class DeclaredTrigger(BaseModel):
    id: str
    name: str | None
    kind: str
    secret: str | None = Field(default=None, description="a new webhook's HMAC key: shown this once")
    webhook_path: str | None = None


class Registered(BaseModel):
    path: str
    version: int
    warnings: list[Diagnostic]
    triggers: list[DeclaredTrigger] = Field(default_factory=list, description="the triggers it declares")


class PlaybookSummary(BaseModel):
    path: str
    version: int
    name: str | None
    description: str | None
    tags: list[str]
    labels: dict[str, Any]
    created_at: datetime


class Playbook(PlaybookSummary):
    content: str = Field(description="the YAML exactly as registered")


class PlaybookList(BaseModel):
    items: list[PlaybookSummary]


class Deleted(BaseModel):
    deleted: int
