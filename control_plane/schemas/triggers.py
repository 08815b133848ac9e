"""Triggers' requests and answers (docs/triggers.md): a webhook's secret only in the answer that makes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from control_plane.schemas.base import unstorable
from engine.dsl.triggers import TriggerSpec


class TriggerCreate(TriggerSpec):
    """A trigger of the playbook at `path`: one of cron, every, after, subject, webhook, and how it runs."""

    path: str = Field(min_length=1, max_length=500, description="the catalog path of the playbook it starts")

    @model_validator(mode="after")
    def _storable(self) -> TriggerCreate:
        problem = unstorable(self.model_dump(mode="json"))
        if problem:
            raise ValueError(f"{problem}; send plain UTF-8 text and finite numbers")
        return self

    def spec(self) -> TriggerSpec:
        return TriggerSpec.model_validate(self.model_dump(exclude={"path"}, exclude_unset=True))


class FiringInfo(BaseModel):
    id: str
    scheduled_at: datetime
    status: str = Field(description="pending, queued, started, skipped or failed")
    reason: str | None
    execution_id: str | None


class TriggerInfo(BaseModel):
    id: str
    name: str | None
    path: str
    version: int | None
    kind: str = Field(description="cron, interval, after, subject or webhook")
    spec: dict[str, Any]
    source: str = Field(description="api, or playbook (declared in it, registered with it)")
    paused: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    next_at: list[datetime] = Field(description="when a cron or every trigger fires next")
    webhook_path: str | None = Field(description="where a webhook trigger takes deliveries")


class TriggerCreated(TriggerInfo):
    secret: str | None = Field(description="a webhook's HMAC key: shown in this answer only")


class TriggerDetail(TriggerInfo):
    firings: list[FiringInfo]


class TriggerList(BaseModel):
    items: list[TriggerInfo]


class TriggerEventInfo(BaseModel):
    seq: int
    trigger_id: str
    firing_id: str | None
    type: str
    reason: str | None
    execution_id: str | None
    occurred_at: datetime
    body: dict[str, Any]


class TriggerEventList(BaseModel):
    items: list[TriggerEventInfo]


class HookAccepted(BaseModel):
    firing_id: str
    status: str = Field(description="started, queued, skipped or failed")
    execution_id: str | None
    reason: str | None
    duplicate: bool = Field(description="this delivery id came before: nothing new was started")
