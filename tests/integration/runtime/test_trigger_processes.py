"""Triggers across real server processes: two servers never start one firing twice, and a trigger
catches up, by its policy, the time no server was running (docs/triggers.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from control_plane.services.catalog import CatalogService
from control_plane.services.triggers import TriggerService
from control_plane.stack import Stack
from control_plane.store.triggers import FiringRecord
from control_plane.triggers.firing import GRACE_S
from engine.dsl.triggers import TriggerSpec
from tests.harness.polling import poll
from tests.integration.runtime.test_faults import playbook
from tests.integration.runtime.test_partitions import SERVER, split_between

pytestmark = pytest.mark.anyio

NOOP = "workflow:\n  - step: start\n    tool: {kind: noop, result: 1}\n"


async def _trigger(client: Stack, **spec: Any) -> tuple[TriggerService, str, str]:
    assert client.store is not None
    registered = await CatalogService(client.store).register(playbook(f"trig_{uuid.uuid4().hex[:8]}", NOOP))
    path = registered.path
    service = TriggerService(client.store)
    created = await service.create(path, TriggerSpec.model_validate(spec), actor="test")
    return service, path, created.trigger.trigger_id


async def _executions_of(client: Stack, path: str) -> list[str]:
    assert client.store is not None
    rows = await client.store.db.fetch_all("SELECT execution_id FROM executions WHERE playbook_path = %s",
                                           (path,))
    return [r["execution_id"] for r in rows]


async def test_two_server_processes_start_each_firing_of_a_trigger_once(
        client: Stack, spawn: Any, runtime_env: dict[str, str]) -> None:
    spawn("server", "start", *SERVER)
    spawn("server", "start", *SERVER)
    spawn("worker", "start", "--concurrency", "4")
    await split_between(runtime_env["NOETL_PG_DSN"], 2)
    service, path, trigger_id = await _trigger(client, every="1s")

    async def six_started() -> list[FiringRecord] | None:
        started = [f for f in await service.firings(trigger_id, limit=100) if f.status == "started"]
        return started if len(started) >= 6 else None

    await poll(six_started, timeout_s=60, what="six firings of an every-1s trigger on two servers")
    await service.set_paused(trigger_id, True, actor="test")
    firings = await service.firings(trigger_id, limit=1000)
    started = [f for f in firings if f.status == "started"]
    assert len({f.scheduled_at for f in firings}) == len(firings)
    assert len({f.execution_id for f in started}) == len(started)

    async def none_pending() -> bool:
        return all(f.status != "pending" for f in await service.firings(trigger_id, limit=1000))

    await poll(none_pending, timeout_s=30, what="every recorded firing to be started")
    firings = await service.firings(trigger_id, limit=1000)
    started = [f for f in firings if f.status == "started"]
    executions = await _executions_of(client, path)
    assert sorted(executions) == sorted(f.execution_id for f in started if f.execution_id)
    assert client.executions is not None
    for execution_id in executions:
        assert (await client.executions.wait(execution_id, timeout_s=60))["status"] == "completed"


async def test_a_trigger_catches_up_the_time_no_server_ran_by_its_policy(
        client: Stack, spawn: Any, runtime_env: dict[str, str]) -> None:
    service, path, trigger_id = await _trigger(client, every="1s", catchup="all", catchup_limit=3)
    created = datetime.now(UTC)
    # the scenario itself: no server runs for a while, so firings are missed (older than GRACE_S)
    await anyio.sleep(GRACE_S + 4.5)
    down_until = datetime.now(UTC)
    spawn("server", "start", *SERVER)
    spawn("worker", "start", "--concurrency", "4")

    window = down_until - timedelta(seconds=GRACE_S + 1)  # surely missed: older than the grace at the start

    async def decided() -> bool:
        late = [f for f in await service.firings(trigger_id, limit=1000) if f.scheduled_at < window]
        return bool(late) and all(f.status != "pending" for f in late)

    await poll(decided, timeout_s=60, what="the missed firings to be decided and started")
    await service.set_paused(trigger_id, True, actor="test")

    async def none_pending() -> list[FiringRecord] | None:
        firings = await service.firings(trigger_id, limit=1000)
        return firings if all(f.status != "pending" for f in firings) else None

    firings = await poll(none_pending, timeout_s=30, what="every recorded firing to be started")
    caught_up = [f for f in firings if "caught up" in (f.reason or "")]
    skipped = [f for f in firings if f.status == "skipped"]
    shown = "\n".join(f"{f.scheduled_at:%H:%M:%S.%f} {f.status} {f.reason}" for f in firings)
    assert len(caught_up) == 3 and all(f.status == "started" for f in caught_up), shown
    assert skipped and all("catchup: all, catchup_limit: 3" in (f.reason or "") for f in skipped), shown
    assert max(f.scheduled_at for f in skipped) < min(f.scheduled_at for f in caught_up), shown  # the newest
    assert min(f.scheduled_at for f in skipped) < window, shown
    assert min(f.scheduled_at for f in firings) > created
    executions = await _executions_of(client, path)
    assert len(executions) == len([f for f in firings if f.status == "started"])
