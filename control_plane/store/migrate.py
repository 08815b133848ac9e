"""Apply the SQL files in migrations/ in order, once each, under an advisory lock (safe to race)."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from control_plane.errors import MigrationError
from control_plane.store.db import Database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_lock key shared by every process that migrates this database ('noetl' in ASCII)
LOCK_KEY = 0x6E6F65746C
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str  # sha256 of the file: an applied migration must never change


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of `directory`, by version; every .sql file must be named NNNN_name.sql."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name '{path.name}' is not NNNN_name.sql",
                                 where=str(path), fix="rename it, e.g. 0002_add_index.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations have version {version}: '{found[version].name}' "
                                 f"and '{path.name}'", where=str(directory),
                                 fix="give the newer file the next free number")
        text = path.read_text(encoding="utf-8")
        found[version] = Migration(version, path.name, text, hashlib.sha256(text.encode()).hexdigest())
    return [found[v] for v in sorted(found)]


async def migrate(db: Database, *, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the pending migrations, each in its own transaction; return the versions applied now.

    Idempotent, and safe when several processes start at once: the work runs under a session
    advisory lock, so a second caller waits, then finds nothing left to do.
    """
    migrations = discover(directory)
    applied_now: list[int] = []
    async with db.connection() as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            await conn.execute(_CREATE_TABLE)
            cur = await conn.execute("SELECT version, name, checksum FROM schema_migrations")
            applied = {row["version"]: row for row in await cur.fetchall()}
            _check_applied(migrations, applied, directory)
            for migration in migrations:
                if migration.version in applied:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum))
                except Exception as exc:
                    raise MigrationError(f"migration {migration.name} failed: {exc}",
                                         where=str(directory / migration.name),
                                         fix="fix the SQL (nothing of this file was applied) and start "
                                             "again") from exc
                log.info("applied migration %s", migration.name)
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


async def applied_versions(db: Database) -> list[int]:
    """The versions recorded in schema_migrations (empty before the first migrate)."""
    row = await db.fetch_one("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
    if not row or not row["present"]:
        return []
    rows = await db.fetch_all("SELECT version FROM schema_migrations ORDER BY version")
    return [r["version"] for r in rows]


def _check_applied(migrations: list[Migration], applied: dict[int, dict[str, object]],
                   directory: Path) -> None:
    known = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            log.warning("the database has migration %s (%s), which this code does not know: "
                        "it was migrated by a newer version", version, row["name"])
        elif migration.checksum != row["checksum"]:
            raise MigrationError(
                f"migration {migration.name} was changed after it was applied "
                f"(stored checksum {str(row['checksum'])[:12]}, file {migration.checksum[:12]})",
                where=str(directory / migration.name),
                fix="restore the file as it was and put the change in a new migration file")
