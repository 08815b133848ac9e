"""API tokens' requests and answers: the token itself only in the answer that creates it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from control_plane.schemas.base import RequestModel

Role = Literal["viewer", "operator", "approver", "admin"]


class TokenRequest(RequestModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S", description="who or what uses it")
    role: Role


class TokenInfo(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None


class TokenCreated(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    token: str = Field(description="shown this once: only its SHA-256 is stored")


class TokenList(BaseModel):
    items: list[TokenInfo]
