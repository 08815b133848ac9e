"""Credentials' requests and answers: values go in, never out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from control_plane.schemas.base import RequestModel


class CredentialRequest(RequestModel):
    type: str = Field(min_length=1, max_length=100, description="postgres, http, bearer, ...")
    data: dict[str, Any] = Field(description="the fields (stored encrypted, never returned)")
    description: str | None = Field(default=None, max_length=2000)


class CredentialInfo(BaseModel):
    name: str
    type: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class CredentialList(BaseModel):
    items: list[CredentialInfo]
