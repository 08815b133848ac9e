"""Credentials: encrypted at rest, round trip, wrong key, key file permissions, list without values."""

from __future__ import annotations

import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from control_plane.errors import InvalidArgumentError, NotFoundError, SecretKeyError
from control_plane.store.credentials import CredentialStore
from control_plane.store.db import Database
from control_plane.store.secret_key import (
    ENV_VAR,
    KEY_FILE_NAME,
    SecretKey,
    key_from_environment,
    load_secret_key,
)
from engine.tools.base import Credential, CredentialResolver, MissingCredentialError

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-Pa55w0rd-\u00e9-do-not-leak"
PG = {"db_host": "localhost", "db_port": 5432, "db_user": "noetl", "db_password": SECRET, "db_name": "demo"}


@pytest.fixture
def key() -> SecretKey:
    return SecretKey.generate("test")


@pytest.fixture
def creds(db: Database, key: SecretKey) -> CredentialStore:
    store: CredentialResolver = CredentialStore(db, key)  # the engine's resolver port is satisfied
    assert isinstance(store, CredentialStore)
    return store


async def test_round_trip_and_replace(creds: CredentialStore) -> None:
    info = await creds.set("pg_main", "Postgres", PG, description="the main database")
    assert (info.name, info.type, info.description) == ("pg_main", "postgres", "the main database")
    got = await creds.get("pg_main")
    assert got == Credential(name="pg_main", type="postgres", data=PG)
    again = await creds.set("pg_main", "postgres", {"dsn": f"postgresql://noetl:{SECRET}@db/x"})
    assert again.created_at == info.created_at and again.updated_at > info.updated_at
    assert again.description is None
    assert (await creds.get("pg_main")).data == {"dsn": f"postgresql://noetl:{SECRET}@db/x"}
    assert (await creds.info("pg_main")).type == "postgres"


async def test_values_are_not_in_the_database_in_clear_text(creds: CredentialStore, db: Database) -> None:
    await creds.set("pg_main", "postgres", PG)
    await creds.set("api", "bearer", {"token": SECRET})
    rows = await db.fetch_all("SELECT nonce, ciphertext, credentials::text AS whole FROM credentials")
    assert len(rows) == 2
    needles = [SECRET.encode(), SECRET.encode("utf-16-le"), base64.b64encode(SECRET.encode()), b"db_password"]
    for row in rows:
        blob = bytes(row["nonce"]) + bytes(row["ciphertext"]) + row["whole"].encode()
        for needle in needles:
            assert needle not in blob
        assert len(bytes(row["nonce"])) == 12
    nonces = {bytes(r["nonce"]) for r in rows}
    assert len(nonces) == 2
    before = await db.fetch_one("SELECT nonce FROM credentials WHERE name = 'api'")
    await creds.set("api", "bearer", {"token": SECRET})
    after = await db.fetch_one("SELECT nonce FROM credentials WHERE name = 'api'")
    assert before is not None and after is not None and before["nonce"] != after["nonce"]  # fresh nonce


async def test_a_wrong_key_fails_clearly(creds: CredentialStore, db: Database) -> None:
    await creds.set("pg_main", "postgres", PG)
    other = CredentialStore(db, SecretKey.generate("NOETL_SECRET_KEY"))
    with pytest.raises(SecretKeyError, match="another key") as info:
        await other.get("pg_main")
    message = str(info.value)
    assert "pg_main" in message and ENV_VAR in message and SECRET not in message


async def test_ciphertext_is_bound_to_its_name(creds: CredentialStore, db: Database) -> None:
    await creds.set("a", "bearer", {"token": SECRET})
    await creds.set("b", "bearer", {"token": "other"})
    await db.execute("UPDATE credentials SET nonce = s.nonce, ciphertext = s.ciphertext "
                     "FROM credentials s WHERE credentials.name = 'b' AND s.name = 'a'")
    with pytest.raises(SecretKeyError, match="does not authenticate"):
        await creds.get("b")


async def test_list_never_returns_values(creds: CredentialStore) -> None:
    await creds.set("pg_main", "postgres", PG, description="main")
    await creds.set("api", "opaque-thing", {"anything": {"nested": [SECRET]}})
    listed = await creds.list()
    assert [(c.name, c.type, c.description) for c in listed] == [
        ("api", "opaque-thing", None), ("pg_main", "postgres", "main")]
    assert all(not hasattr(c, "data") for c in listed)
    assert SECRET not in repr(listed)


async def test_missing_and_delete(creds: CredentialStore) -> None:
    with pytest.raises(MissingCredentialError, match="'ghost' is not stored"):
        await creds.get("ghost")
    await creds.set("tmp", "bearer", {"token": "x"})
    await creds.delete("tmp")
    with pytest.raises(MissingCredentialError):
        await creds.get("tmp")
    with pytest.raises(NotFoundError, match="'tmp' is not stored"):
        await creds.delete("tmp")


async def test_known_types_are_validated_without_echoing_values(creds: CredentialStore) -> None:
    with pytest.raises(InvalidArgumentError, match="lacks db_password, db_name") as info:
        await creds.set("pg", "postgres", {"db_host": SECRET, "db_port": 5432, "db_user": "u"})
    assert SECRET not in str(info.value) and "dsn" in str(info.value)
    with pytest.raises(InvalidArgumentError, match="db_port"):
        await creds.set("pg", "postgres", {**PG, "db_port": "five"})
    with pytest.raises(InvalidArgumentError, match="name"):
        await creds.set("bad name!", "bearer", {"token": "x"})
    with pytest.raises(InvalidArgumentError, match="not plain JSON") as info:
        await creds.set("x", "bearer", {"token": float("nan"), "password": SECRET})
    assert SECRET not in str(info.value)
    await creds.set("pg", "postgres", {**PG, "db_port": "5433"})
    # the aliases the postgres tool reads, and an empty password (trust or peer authentication)
    await creds.set("pg", "postgres", {"host": "h", "port": 5432, "user": "u", "password": "", "dbname": "d"})
    await creds.set("pg", "postgres", {"connection_string": "postgresql://u@h/d"})
    with pytest.raises(InvalidArgumentError, match="lacks db_password"):
        await creds.set("pg", "postgres", {"host": "h", "port": 5432, "user": "u", "dbname": "d"})
    await creds.set("opaque", "snowflake-ish", {"whatever": 1})
    assert (await creds.get("opaque")).data == {"whatever": 1}


def test_a_key_file_is_created_with_mode_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_secret_key(data_dir)
    path = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.source == str(path)
    assert load_secret_key(data_dir).material == first.material
    assert first.material.hex() not in repr(first)


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_secret_key(tmp_path)
    path = tmp_path / KEY_FILE_NAME
    os.chmod(path, 0o644)
    with pytest.raises(SecretKeyError, match="mode 0644") as info:
        load_secret_key(tmp_path)
    assert f"chmod 600 {path}" in str(info.value)


def test_the_environment_variable_wins_in_hex_or_base64(tmp_path: Path) -> None:
    raw = os.urandom(32)
    from_hex = key_from_environment(tmp_path, {ENV_VAR: raw.hex()})
    from_b64 = key_from_environment(tmp_path, {ENV_VAR: base64.b64encode(raw).decode()})
    from_url = key_from_environment(tmp_path, {ENV_VAR: base64.urlsafe_b64encode(raw).decode().rstrip("=")})
    assert from_hex.material == from_b64.material == from_url.material == raw
    assert from_hex.source == ENV_VAR and not (tmp_path / KEY_FILE_NAME).exists()
    for bad in ("tooshort", raw.hex()[:-2], base64.b64encode(raw[:16]).decode()):
        with pytest.raises(SecretKeyError, match="64 hex characters") as info:
            key_from_environment(tmp_path, {ENV_VAR: bad})
        assert bad not in str(info.value)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_secret_key(tmp_path / "d").material, range(16)))
    assert len(set(keys)) == 1
    assert [p.name for p in (tmp_path / "d").iterdir()] == [KEY_FILE_NAME]
