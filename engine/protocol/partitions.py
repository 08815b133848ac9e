"""Orchestration partitions: which share of the executions an orchestrator process owns (docs/runtime.md).

Every execution belongs to one of PARTITIONS partitions, by a hash of its id that Postgres computes the
same way (`noetl_partition_of`, migration 0008), so a partition's executions can be found in the log. The
number is part of the wire contract: the event and report subjects carry the partition, and a deployment
must never change it while it has executions running. Sixteen lets up to sixteen orchestrator processes
share the work; each partition is a durable consumer on the event stream (a Raft group of its own on a
NATS cluster), so more would cost the cluster more than they give.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

PARTITIONS = 16


@lru_cache(maxsize=8192)
def partition_of(execution_id: str) -> int:
    """The partition of an execution: the first 32 bits of the md5 of its id, modulo PARTITIONS."""
    return int(hashlib.md5(execution_id.encode(), usedforsecurity=False).hexdigest()[:8], 16) % PARTITIONS


def partition_token(partition: int) -> str:
    """The partition as a subject token: two digits."""
    if not 0 <= partition < PARTITIONS:
        raise ValueError(f"partition {partition} is out of range: partitions are 0..{PARTITIONS - 1}")
    return f"{partition:02d}"


ALL_PARTITIONS = frozenset(range(PARTITIONS))
