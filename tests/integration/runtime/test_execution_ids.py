"""Execution ids (spec 13) where they meet the store: a new id that is taken already (two processes drew
the same one) is never shared, and a child whose id belongs to another execution fails its step."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from control_plane.stack import Stack
from engine.protocol.commands import StartChild
from engine.protocol.ids import new_execution_id

pytestmark = pytest.mark.anyio


async def register(stack: Stack) -> str:
    assert stack.executions is not None
    text = (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: ids_{uuid.uuid4().hex[:8]}}}\n"
            + textwrap.dedent("""\
                workflow:
                  - {step: one, tool: {kind: noop}}
                """))
    return (await stack.executions.register(text)).path


async def test_a_new_id_that_is_stored_already_is_passed_over_for_another(
        client: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.executions is not None
    path = await register(client)
    taken = await client.executions.start(path)
    fresh = new_execution_id()
    drawn = iter([taken, fresh])
    monkeypatch.setattr("control_plane.services.executions.new_execution_id", lambda: next(drawn))
    started = await client.executions.start(path, payload={"second": True})
    assert started == fresh
    assert (await client.executions.get(taken)).payload == {}  # the first run kept its row
    assert (await client.executions.get(fresh)).payload == {"second": True}


async def test_a_child_whose_id_belongs_to_another_execution_is_refused_with_a_clear_error(
        client: Stack) -> None:
    assert client.executions is not None
    path = await register(client)
    parent = await client.executions.start(path)
    other = await client.executions.start(path)
    command = StartChild(command_id="cmd-1", execution_id=parent, child_execution_id=other, step="call",
                         run=1, path=path)
    with pytest.raises(LookupError, match=f"child execution {other} could not be started"):
        await client.executions.start_child(command)
    assert (await client.executions.get(other)).parent_execution_id is None
