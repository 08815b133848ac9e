"""Cursors of the event log's followers: a name -> the position (JSON) it has read up to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from control_plane.errors import InvalidArgumentError
from control_plane.store.db import Database


class CursorStore:
    """`get(name)` the stored position (None before the first `set`), `set(name, position)` replaces it."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, name: str) -> dict[str, Any] | None:
        row = await self._db.fetch_one("SELECT position FROM indexer_cursors WHERE name = %s", (name,))
        return None if row is None else dict(row["position"])

    async def set(self, name: str, position: Mapping[str, Any]) -> None:
        if not name:
            raise InvalidArgumentError("a cursor needs a name", where="indexer_cursors",
                                       fix="pass the follower's name, e.g. 'default'")
        await self._db.execute(
            "INSERT INTO indexer_cursors (name, position) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
            "SET position = EXCLUDED.position, updated_at = clock_timestamp()", (name, Jsonb(dict(position))))
