"""The orchestrator's commit pipeline: commands go out before their cause is committed, and an outcome
that overtakes its cause (after a crash, or a failed append) is held back, never recorded first."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
import pytest

from control_plane.stack import Stack
from engine.net.fire import command_id
from engine.protocol.events import Event, encode_events
from engine.protocol.results import ResultEnvelope
from tests.harness.polling import poll
from tests.harness.runtime import stack_config_of

pytestmark = pytest.mark.anyio


def two_steps(name: str) -> str:
    return (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: tests/{name}}}\n"
            "workflow:\n"
            "  - step: first\n    tool: {kind: noop, result: one}\n    next: second\n"
            "  - step: second\n    tool: {kind: noop, result: two}\n")


def outcome(execution_id: str, step: str, data: Any) -> Event:
    """The outcome a worker would publish for the step's first run."""
    cid = command_id(execution_id, step, 1, None)
    return Event(event_id=uuid.uuid4().hex, idempotency_key=f"{cid}:outcome", execution_id=execution_id,
                 type="step.succeeded", step=step, command_id=cid, run=1, attempt=1,
                 result=ResultEnvelope.ok(data))


async def test_an_outcome_that_overtakes_its_command_is_held_back_until_the_command_is_issued(
        runtime_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.runtime.orchestrator")
    # an orchestrator and no worker: this test plays the worker, and sends `second`'s outcome before
    # `first` finished, as a worker would after a crash that lost the commit of `first`'s outcome
    async with Stack(stack_config_of(runtime_env, workers={})) as stack:
        assert stack.bus is not None and stack.store is not None and stack.executions is not None
        execution_id = await start_waiting_for_first(stack, "early")

        async def types() -> list[tuple[str, str | None]]:
            return await recorded_types(stack, execution_id)

        early = outcome(execution_id, "second", "two")
        await stack.bus.publish_event(execution_id, early.idempotency_key, encode_events([early]))
        # held back: given back to the bus again and again, and not recorded, while its command was
        # never issued
        await poll(lambda: held_back(caplog, early.command_id or "") >= 3, timeout_s=30,
                   what="the early outcome to be held back three times")
        assert ("step.succeeded", "second") not in await types()
        done = outcome(execution_id, "first", "one")
        await stack.bus.publish_event(execution_id, done.idempotency_key, encode_events([done]))
        summary = await stack.executions.wait(execution_id, timeout_s=30)
        assert summary["status"] == "completed"
        assert summary["steps"]["second"]["result"] == "two"
        recorded = await types()
        assert recorded.index(("step.scheduled", "second")) < recorded.index(("step.succeeded", "second"))
        assert recorded.count(("step.succeeded", "second")) == 1


async def recorded_types(stack: Stack, execution_id: str) -> list[tuple[str, str | None]]:
    assert stack.store is not None
    return [(e.type, e.step) for e in await stack.store.events.events(execution_id)]


async def start_waiting_for_first(stack: Stack, prefix: str) -> str:
    """Start the two-step playbook; return once `first` is scheduled (its command is out)."""
    assert stack.executions is not None
    registered = await stack.executions.register(two_steps(f"{prefix}_{uuid.uuid4().hex[:8]}"))
    execution_id = await stack.executions.start(registered.path)

    async def first_scheduled() -> bool:
        return ("step.scheduled", "first") in await recorded_types(stack, execution_id)

    await poll(first_scheduled, timeout_s=30, what="first to be scheduled")
    return execution_id


def held_back(caplog: pytest.LogCaptureFixture, command: str) -> int:
    prefix = f"holding back a report on command {command}"
    return sum(1 for r in caplog.records if r.getMessage().startswith(prefix))


_BREAK = """
CREATE OR REPLACE FUNCTION test_refuse_events() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'the event log refuses writes (test)'; END $$;
CREATE TRIGGER test_refuse_events BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION test_refuse_events();
"""
_HEAL = "DROP TRIGGER test_refuse_events ON events"


async def test_a_failed_append_gives_the_batch_back_and_the_execution_finishes_once_the_log_heals(
        runtime_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine.runtime")
    async with Stack(stack_config_of(runtime_env, workers={})) as stack:
        assert stack.bus is not None and stack.store is not None and stack.executions is not None
        execution_id = await start_waiting_for_first(stack, "refused")
        store = stack.store.events

        async def types() -> list[tuple[str, str | None]]:
            return await recorded_types(stack, execution_id)

        with psycopg.connect(runtime_env["NOETL_PG_DSN"], autocommit=True) as admin:
            admin.execute(_BREAK)
            try:
                done = outcome(execution_id, "first", "one")
                await stack.bus.publish_event(execution_id, done.idempotency_key, encode_events([done]))
                await poll(lambda: any("appending" in r.getMessage() and "failed" in r.getMessage()
                                       for r in caplog.records), timeout_s=30, what="an append to fail")
                # `second` went out before the failed commit; its worker reports while the log is down
                early = outcome(execution_id, "second", "two")
                await stack.bus.publish_event(execution_id, early.idempotency_key, encode_events([early]))
                assert ("step.succeeded", "first") not in await types()
            finally:
                admin.execute(_HEAL)
        summary = await stack.executions.wait(execution_id, timeout_s=60)
        assert summary["status"] == "completed"
        assert summary["steps"]["first"]["result"] == "one"
        assert summary["steps"]["second"]["result"] == "two"
        events = await store.events(execution_id)
        recorded = [(e.type, e.step) for e in events]
        assert recorded.count(("step.succeeded", "first")) == 1
        assert recorded.count(("step.succeeded", "second")) == 1
        assert recorded.index(("step.scheduled", "second")) < recorded.index(("step.succeeded", "second"))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
