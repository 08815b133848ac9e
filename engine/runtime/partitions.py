"""Which orchestrator owns which partition: the pure part of the leases (docs/runtime.md "Partitions").

Every tick, each orchestrator process reads the live members and the partitions' owners from the store
(engine.runtime.ports.PartitionLeases) and `plan` says what it takes and what it gives up. The wanted
owner of a partition is chosen by rendezvous hashing over the live members, so every member computes
the same answer from the same view, and a member joining or leaving moves only its share
(PARTITIONS / members) of the partitions. A member takes a partition only once nobody owns it (free,
expired, or its owner is not a live member): the owner gives it up first, after storing what it had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.errors import EngineError
from engine.protocol.partitions import PARTITIONS


class PartitionFencedError(EngineError):
    """An append carried a lease this orchestrator no longer holds: another process owns the partition."""

    code = "fenced"


@dataclass(frozen=True, slots=True)
class Fence:
    """What an orchestrator's appends carry: its member id and the epoch of each partition it holds."""

    owner: str
    epochs: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class LeaseView:
    """One tick's look at the store: the live members and each partition's current owner (None: nobody
    owns it now: released, expired, or its owner is not live)."""

    me: str
    members: Sequence[str]
    owners: Mapping[int, str | None]


@dataclass(frozen=True, slots=True)
class LeasePlan:
    take: frozenset[int] = field(default_factory=frozenset)
    give: frozenset[int] = field(default_factory=frozenset)


def _weight(member: str, partition: int) -> int:
    return int.from_bytes(hashlib.md5(f"{member}/{partition}".encode(), usedforsecurity=False).digest()[:8])


def wanted_owner(partition: int, members: Sequence[str]) -> str | None:
    """The member that should own `partition` (rendezvous hashing: the highest weight); None: no member."""
    return max(members, key=lambda member: (_weight(member, partition), member), default=None)


def assignment(members: Sequence[str]) -> dict[int, str | None]:
    return {partition: wanted_owner(partition, members) for partition in range(PARTITIONS)}


def plan(view: LeaseView) -> LeasePlan:
    """What `view.me` takes (its partitions nobody owns) and gives up (those another live member should
    own). A member that is not among the live members (its heartbeat is late) takes nothing."""
    members = list(view.members)
    if view.me not in members:
        return LeasePlan()
    wanted = assignment(members)
    take = {p for p in range(PARTITIONS) if wanted[p] == view.me and view.owners.get(p) is None}
    give = {p for p, owner in view.owners.items() if owner == view.me and wanted.get(p) != view.me}
    return LeasePlan(frozenset(take), frozenset(give))
