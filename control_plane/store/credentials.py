"""Credentials encrypted at rest (AES-256-GCM, the name as associated data); a CredentialResolver.

Only names, types, descriptions and timestamps are stored in clear; the fields (`data`) are one
encrypted JSON object. Nothing here logs or puts a value in an error message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.store.db import Database
from control_plane.store.secret_key import SecretKey
from engine.dsl.model import NAME_PATTERN
from engine.tools.base import Credential, MissingCredentialError

log = logging.getLogger(__name__)

_NAME = re.compile(NAME_PATTERN)
# the canonical postgres keys and the aliases engine/tools/postgres_tool.py also reads
_POSTGRES_FIELDS = {"db_host": ("db_host", "host"), "db_port": ("db_port", "port"),
                    "db_user": ("db_user", "user", "username"), "db_password": ("db_password", "password"),
                    "db_name": ("db_name", "dbname", "database")}
_POSTGRES_URL_KEYS = ("dsn", "connection_string", "url")


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What may be shown about a credential: never its values."""

    name: str
    type: str
    description: str | None
    created_at: datetime
    updated_at: datetime


def _check_postgres(name: str, data: Mapping[str, Any]) -> None:
    """A connection string, or every field (an alias counts; the password may be empty, not absent)."""
    if any(isinstance(data.get(k), str) and data[k].strip() for k in _POSTGRES_URL_KEYS):
        return

    def value(field: str) -> Any:
        return next((data[a] for a in _POSTGRES_FIELDS[field] if data.get(a) is not None), None)

    missing = [f for f in _POSTGRES_FIELDS
               if value(f) is None or (f != "db_password" and str(value(f)).strip() == "")]
    if missing:
        raise InvalidArgumentError(
            f"postgres credential '{name}' lacks {', '.join(missing)}", where=f"credential {name}",
            fix=f"give either 'dsn' or all of {', '.join(_POSTGRES_FIELDS)}")
    port = value("db_port")
    if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(str(port)) < 65536:
        raise InvalidArgumentError(f"postgres credential '{name}' has a db_port that is not a port number",
                                   where=f"credential {name}", fix="give an integer from 1 to 65535")


# required fields of the credential types the tools know; other types are stored as opaque mappings
KNOWN_TYPES = {"postgres": _check_postgres}


def check_credential(name: str, credential_type: str, data: Mapping[str, Any]) -> str:
    """Validate name, type and (for known types) the required fields; return the normalized type."""
    if not _NAME.match(name):
        raise InvalidArgumentError(f"credential name '{name}' is not valid", where="credentials",
                                   fix="use letters, digits, '_', '.' and '-' only")
    kind = credential_type.strip().lower()
    if not kind:
        raise InvalidArgumentError(f"credential '{name}' has no type", where=f"credential {name}",
                                   fix=f"pass a type such as {', '.join(KNOWN_TYPES)}, http or bearer")
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"credential '{name}' data is a {type(data).__name__}, not a mapping",
                                   where=f"credential {name}",
                                   fix='pass a JSON object such as {"token": "..."}')
    checker = KNOWN_TYPES.get(kind)
    if checker is not None:
        checker(name, data)
    return kind


class CredentialStore:
    """Create, read, list and delete credentials; `get` makes it an engine CredentialResolver."""

    def __init__(self, db: Database, key: SecretKey) -> None:
        self._db = db
        self._key = key

    async def set(self, name: str, type: str, data: Mapping[str, Any],
                  description: str | None = None) -> CredentialInfo:
        """Create or replace the credential (a fresh nonce every time)."""
        kind = check_credential(name, type, data)
        try:
            plaintext = json.dumps(dict(data), allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError):  # the exception text may quote a value: not chained
            raise InvalidArgumentError(f"credential '{name}' data is not plain JSON (strings, numbers, "
                                       "booleans, lists, objects)", where=f"credential {name}",
                                       fix="convert dates, bytes and NaN to strings first") from None
        nonce, ciphertext = self._key.seal(name, plaintext)
        row = await self._db.fetch_one(
            "INSERT INTO credentials (name, type, description, key_id, nonce, ciphertext) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET type = EXCLUDED.type, "
            "description = EXCLUDED.description, key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, "
            "ciphertext = EXCLUDED.ciphertext, updated_at = clock_timestamp() "
            "RETURNING name, type, description, created_at, updated_at",
            (name, kind, description, self._key.key_id, nonce, ciphertext))
        assert row is not None  # RETURNING of an upsert always yields the row
        log.info("credential %s stored (type %s)", name, kind)
        return CredentialInfo(**row)

    async def get(self, name: str) -> Credential:
        """The decrypted credential.

        Raises MissingCredentialError if it is not stored, SecretKeyError if the key cannot decrypt it.
        """
        row = await self._db.fetch_one(
            "SELECT type, key_id, nonce, ciphertext FROM credentials WHERE name = %s", (name,))
        if row is None:
            raise MissingCredentialError(name)
        plaintext = self._key.open(name, bytes(row["nonce"]), bytes(row["ciphertext"]),
                                   stored_key_id=row["key_id"])
        return Credential(name=name, type=row["type"], data=json.loads(plaintext))

    async def info(self, name: str) -> CredentialInfo:
        row = await self._db.fetch_one(
            "SELECT name, type, description, created_at, updated_at FROM credentials WHERE name = %s",
            (name,))
        if row is None:
            raise MissingCredentialError(name)
        return CredentialInfo(**row)

    async def list(self) -> list[CredentialInfo]:
        """Names, types, descriptions and timestamps, by name: never values."""
        rows = await self._db.fetch_all(
            "SELECT name, type, description, created_at, updated_at FROM credentials ORDER BY name")
        return [CredentialInfo(**r) for r in rows]

    async def delete(self, name: str) -> None:
        count = await self._db.execute("DELETE FROM credentials WHERE name = %s", (name,))
        if count == 0:
            raise NotFoundError(f"credential '{name}' is not stored", where="credentials",
                                fix="list the credentials to see the stored names")
        log.info("credential %s deleted", name)
