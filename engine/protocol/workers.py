"""Worker heartbeats: how a worker tells the orchestrator its pool, hardware labels and capacity."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from engine.protocol.results import WireModel

HEARTBEAT_S = 2.0  # a worker reports this often
DEAD_AFTER_S = 3 * HEARTBEAT_S + 1.0  # a worker not heard from for this long holds no capacity


class WorkerHeartbeat(WireModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: str
    pool: str
    labels: list[str] = Field(default_factory=list)
    capacity: dict[str, float] = Field(default_factory=dict)  # units per resource this worker adds
    concurrency: int = 1
    stopping: bool = False  # the last heartbeat of a worker that shuts down
