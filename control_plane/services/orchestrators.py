"""The orchestrator processes and the partitions each runs now (docs/runtime.md "Partitions"), for the API."""

from __future__ import annotations

from typing import Any

from control_plane.store import Store
from engine.protocol.partitions import PARTITIONS


class OrchestratorsService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def view(self) -> dict[str, Any]:
        """`{"partitions": 16, "members": [...], "unowned": [...]}`: each member (live ones and those heard
        of within a day) with the partitions it holds, and the partitions nobody holds now."""
        members = await self._store.partitions.members()
        owned = {p for member in members for p in member["partitions"]}
        return {"partitions": PARTITIONS,
                "members": [{**m, "started_at": m["started_at"].isoformat()} for m in members],
                "unowned": [p for p in range(PARTITIONS) if p not in owned]}
