"""The catalog: versions 1, 2, 3 per path (atomic, never reused), latest/specific get, list, delete."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.errors import NotFoundError
from control_plane.store.catalog import CatalogStore
from control_plane.store.db import Database

pytestmark = pytest.mark.anyio


def canonical(name: str, n: int) -> dict:
    return {"apiVersion": "noetl.io/v2", "kind": "Playbook",
            "metadata": {"name": name, "description": f"take {n}", "tags": ["etl", f"v{n}"],
                         "labels": {"team": "data"}},
            "workflow": [{"step": "start", "tool": [{"kind": "noop"}]}]}


@pytest.fixture
def catalog(db: Database) -> CatalogStore:
    return CatalogStore(db)


async def test_versions_increase_per_path_and_get_returns_latest_or_specific(catalog: CatalogStore) -> None:
    assert [await catalog.register("etl/daily", f"text {n}", canonical("daily", n)) for n in (1, 2, 3)] == [
        1, 2, 3]
    assert await catalog.register("etl/hourly", "hourly", canonical("hourly", 1)) == 1
    latest = await catalog.get("etl/daily")
    assert (latest.version, latest.text, latest.canonical) == (3, "text 3", canonical("daily", 3))
    assert (latest.name, latest.description, latest.tags, latest.labels) == (
        "daily", "take 3", ["etl", "v3"], {"team": "data"})
    second = await catalog.get("etl/daily", 2)
    assert (second.version, second.text) == (2, "text 2")
    assert [v.version for v in await catalog.versions("etl/daily")] == [1, 2, 3]
    assert await catalog.versions("nope") == []
    with pytest.raises(NotFoundError, match="'etl/daily' version 9"):
        await catalog.get("etl/daily", 9)
    with pytest.raises(NotFoundError, match="'nope' is not in the catalog"):
        await catalog.get("nope")


async def test_list_shows_the_latest_version_of_each_path(catalog: CatalogStore) -> None:
    for path in ("etl/daily", "etl/daily", "ml/train", "etl_x/odd"):
        await catalog.register(path, path, {"metadata": {"name": path.replace("/", "-")}})
    assert [(s.path, s.version) for s in await catalog.list()] == [
        ("etl/daily", 2), ("etl_x/odd", 1), ("ml/train", 1)]
    assert [s.path for s in await catalog.list(prefix="etl/")] == ["etl/daily"]  # '_' is not a wildcard
    assert [s.path for s in await catalog.list(prefix="etl_")] == ["etl_x/odd"]


async def test_delete_and_numbers_are_never_reused(catalog: CatalogStore) -> None:
    for n in (1, 2, 3):
        await catalog.register("p", f"t{n}", {})
    assert await catalog.delete("p", 3) == 1
    assert (await catalog.get("p")).version == 2
    assert await catalog.register("p", "t4", {}) == 4
    assert await catalog.delete("p") == 3
    with pytest.raises(NotFoundError):
        await catalog.get("p")
    with pytest.raises(NotFoundError):
        await catalog.delete("p")
    assert await catalog.register("p", "t5", {}) == 5
    bare = await catalog.get("p")
    assert (bare.name, bare.tags, bare.labels) == (None, [], {})


async def test_concurrent_registrations_get_distinct_numbers(catalog: CatalogStore) -> None:
    versions = await asyncio.gather(*(catalog.register("busy", f"t{n}", {}) for n in range(15)))
    assert sorted(versions) == list(range(1, 16))
    stored = {v.version: (await catalog.get("busy", v.version)).text for v in await catalog.versions("busy")}
    assert sorted(stored.values()) == sorted(f"t{n}" for n in range(15))
