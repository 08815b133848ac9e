"""The orchestrator processes as the API returns them (control_plane.services.orchestrators)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class OrchestratorItem(BaseModel):
    member_id: str
    host: str
    pid: int
    started_at: str
    seen_s_ago: float = Field(description="seconds since its last heartbeat")
    live: bool = Field(description="heard of within the lease's 5 s")
    partitions: list[int] = Field(description="the partitions it holds by a current lease")


class OrchestratorList(BaseModel):
    partitions: int = Field(description="how many partitions the executions are hashed into")
    members: list[OrchestratorItem]
    unowned: list[int] = Field(description="partitions nobody holds now (being handed over)")
