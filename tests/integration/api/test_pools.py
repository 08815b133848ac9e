"""GET /api/pools: each pool's declared capacity, the live workers heard over NATS and the queued commands."""

from __future__ import annotations

import pytest

from tests.harness.polling import poll
from tests.integration.api.helpers import Api

pytestmark = pytest.mark.anyio


async def test_the_pools_show_the_live_worker_with_its_capacity_and_an_empty_queue(api: Api) -> None:
    async def default_pool() -> dict | None:  # type: ignore[type-arg]
        async with api.client("viewer") as client:
            response = await client.get("/api/pools")
        assert response.status_code == 200, response.text
        found = {p["name"]: p for p in response.json()["items"]}
        pool = found.get("default")
        return pool if pool and pool["workers"] else None

    pool = await poll(default_pool, timeout_s=30, what="a live worker in the default pool")
    [worker] = pool["workers"]
    assert worker["pool"] == "default" and worker["concurrency"] == 2 and worker["heard_s_ago"] < 10
    assert pool["live_capacity"] == worker["capacity"] and pool["live_capacity"].get("cpu") == 2
    assert pool["queued"] == 0
