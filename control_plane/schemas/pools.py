"""The worker pools as the API returns them (control_plane.services.pools)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WorkerItem(BaseModel):
    worker: str
    pool: str
    labels: list[str]
    capacity: dict[str, float] = Field(description="units per resource this worker adds")
    concurrency: int
    heard_s_ago: float = Field(description="seconds since its last heartbeat")


class PoolItem(BaseModel):
    name: str
    declared: bool = Field(description="in the deployment's pools file")
    labels: list[str]
    capacity: dict[str, float] = Field(description="declared (else what its live workers add)")
    live_capacity: dict[str, float] = Field(description="summed over the live workers")
    workers: list[WorkerItem]
    queued: int | None = Field(description="commands waiting for a worker; null when the bus did not say")


class PoolList(BaseModel):
    items: list[PoolItem]
