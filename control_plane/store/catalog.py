"""The playbook catalog: every registered version of every path (YAML text + canonical JSON + metadata).

Versions are 1, 2, 3, ... per path, handed out by a per-path counter row (`playbook_paths`) that is
incremented atomically with `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, so concurrent
registrations of one path get distinct numbers. A number is never reused, even after a delete.
The caller validates the playbook before registering it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.store.db import Database

log = logging.getLogger(__name__)

_SUMMARY: LiteralString = "path, version, name, description, tags, labels, created_at"
_GET_LATEST: LiteralString = ("SELECT " + _SUMMARY + ", text, canonical FROM playbook_versions "
                              "WHERE path = %s ORDER BY version DESC LIMIT 1")
_GET_ONE: LiteralString = ("SELECT " + _SUMMARY + ", text, canonical FROM playbook_versions "
                           "WHERE path = %s AND version = %s")
_VERSIONS: LiteralString = "SELECT " + _SUMMARY + " FROM playbook_versions WHERE path = %s ORDER BY version"
_LATEST_PER_PATH: LiteralString = (
    "SELECT DISTINCT ON (path) " + _SUMMARY + " FROM playbook_versions "
    "WHERE %(prefix)s::text IS NULL OR starts_with(path, %(prefix)s) ORDER BY path, version DESC")


@dataclass(frozen=True, slots=True)
class PlaybookSummary:
    path: str
    version: int
    name: str | None
    description: str | None
    tags: list[str]
    labels: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PlaybookVersion:
    path: str
    version: int
    name: str | None
    description: str | None
    tags: list[str]
    labels: dict[str, Any]
    created_at: datetime
    text: str  # the YAML exactly as registered
    canonical: dict[str, Any]  # the normalized playbook as JSON


def metadata_fields(canonical: Mapping[str, Any]) -> tuple[str | None, str | None, list[str], dict[str, Any]]:
    """(name, description, tags, labels) from the canonical playbook's `metadata`, tolerating absence."""
    metadata = canonical.get("metadata")
    if not isinstance(metadata, Mapping):
        return None, None, [], {}
    name, description = metadata.get("name"), metadata.get("description")
    tags, labels = metadata.get("tags"), metadata.get("labels")
    return (name if isinstance(name, str) else None,
            description if isinstance(description, str) else None,
            [str(t) for t in tags] if isinstance(tags, list) else [],
            dict(labels) if isinstance(labels, Mapping) else {})


class CatalogStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, path: str, text: str, canonical: Mapping[str, Any]) -> int:
        """Store a new version of `path`; return its number (1 for a new path, then 2, 3, ...)."""
        if not path:
            raise InvalidArgumentError("a catalog path cannot be empty", where="catalog.register",
                                       fix="pass the playbook's metadata.path or metadata.name")
        name, description, tags, labels = metadata_fields(canonical)
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO playbook_paths (path, last_version) VALUES (%s, 1) ON CONFLICT (path) "
                "DO UPDATE SET last_version = playbook_paths.last_version + 1 RETURNING last_version",
                (path,))
            row = await cur.fetchone()
            assert row is not None  # RETURNING of an upsert always yields the row
            version = int(row["last_version"])
            await conn.execute(
                "INSERT INTO playbook_versions (path, version, text, canonical, name, description, tags, "
                "labels) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (path, version, text, Jsonb(dict(canonical)), name, description, tags, Jsonb(labels)))
        log.info("catalog: registered %s version %d", path, version)
        return version

    async def get(self, path: str, version: int | None = None) -> PlaybookVersion:
        """The given version of `path`, or its latest when version is None."""
        if version is None:
            row = await self._db.fetch_one(_GET_LATEST, (path,))
        else:
            row = await self._db.fetch_one(_GET_ONE, (path, version))
        if row is None:
            raise _missing(path, version)
        return PlaybookVersion(**row)

    async def versions(self, path: str) -> list[PlaybookSummary]:
        """Every stored version of `path`, oldest first (empty if none)."""
        rows = await self._db.fetch_all(_VERSIONS, (path,))
        return [_summary(r) for r in rows]

    async def list(self, prefix: str | None = None) -> list[PlaybookSummary]:
        """The latest version of every path (starting with `prefix`, if given), by path."""
        rows = await self._db.fetch_all(_LATEST_PER_PATH, {"prefix": prefix})
        return [_summary(r) for r in rows]

    async def delete(self, path: str, version: int | None = None) -> int:
        """Delete one version, or every version when None; return how many were deleted."""
        if version is None:
            count = await self._db.execute("DELETE FROM playbook_versions WHERE path = %s", (path,))
        else:
            count = await self._db.execute(
                "DELETE FROM playbook_versions WHERE path = %s AND version = %s", (path, version))
        if count == 0:
            raise _missing(path, version)
        log.info("catalog: deleted %s %s", path, "all versions" if version is None else f"version {version}")
        return count


def _summary(row: DictRow) -> PlaybookSummary:
    return PlaybookSummary(**row)


def _missing(path: str, version: int | None) -> NotFoundError:
    what = f"playbook '{path}'" if version is None else f"playbook '{path}' version {version}"
    return NotFoundError(f"{what} is not in the catalog", where="catalog",
                         fix="register it first, or list the catalog to see the stored paths and versions")
