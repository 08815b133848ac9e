"""Secrets never reach an event; keychains resolve on the worker; cancelling stops running steps."""

from __future__ import annotations

import json
import os
import textwrap
import uuid

import pytest

from control_plane.stack import Stack

pytestmark = pytest.mark.anyio
CANARY = "canary-" + uuid.uuid4().hex[:12]


async def run(stack: Stack, body: str, payload: dict | None = None, timeout_s: float = 60) -> dict:
    assert stack.executions is not None
    name = f"t_{uuid.uuid4().hex[:8]}"
    text = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}}}\n" + textwrap.dedent(body)
    registered = await stack.executions.register(text)
    execution_id = await stack.executions.start(registered.path, payload=payload)
    return await stack.executions.wait(execution_id, timeout_s=timeout_s)


async def all_events_text(stack: Stack, execution_id: str) -> str:
    events = await stack.store.events.events(execution_id)  # type: ignore[union-attr]
    return json.dumps([e.model_dump(mode="json") for e in events])


async def test_a_credential_value_used_by_a_playbook_appears_in_no_event(stack: Stack) -> None:
    assert stack.store is not None
    await stack.store.credentials.set("api_secret", "http", {"token": CANARY})
    os.environ["NOETL_TEST_SECRET"] = CANARY + "-env"
    summary = await run(stack, """\
        keychain:
          - {name: api, kind: credential, ref: api_secret}
          - {name: fixed, kind: static, map: {region: eu-west-1}}
          - {name: envs, kind: secrets, provider: env, map: {key: NOETL_TEST_SECRET}}
        workflow:
          - step: use
            tool:
              kind: python
              input: {t: "{{ keychain.api.token }}", e: "{{ keychain.envs.key }}",
                      region: "{{ keychain.fixed.region }}"}
              code: "result = {'echo': t, 'env': e, 'length': len(t), 'region_ok': region == 'eu-west-1'}"
            next: leak
          - step: leak
            tool:
              kind: python
              input: {t: "{{ keychain.api.token }}"}
              code: "raise ValueError('the token is ' + t)"
        """)
    assert summary["status"] == "failed"
    use = summary["steps"]["use"]["result"]
    assert use["length"] == len(CANARY) and use["region_ok"] is True
    assert use["echo"] == "***" and use["env"] == "***"
    assert "***" in summary["steps"]["leak"]["error"]["message"]
    text = await all_events_text(stack, summary["execution_id"])
    assert CANARY not in text


async def test_a_missing_credential_fails_the_step_with_missing_credential(stack: Stack) -> None:
    summary = await run(stack, """\
        keychain: [{name: db, kind: credential, ref: not_stored}]
        workflow:
          - {step: a, tool: {kind: noop}}
        """)
    assert summary["status"] == "failed"
    error = summary["steps"]["a"]["error"]
    assert error["kind"] == "missing_credential"
    assert "noetl credential set not_stored" in error["message"]


async def test_cancelling_an_execution_stops_its_running_step_and_ends_cancelled(stack: Stack) -> None:
    assert stack.executions is not None
    name = f"cancel_me_{uuid.uuid4().hex[:8]}"
    text = (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}}}\n"
            "workflow:\n  - step: long\n    tool: {kind: python, code: 'import time; time.sleep(60)'}\n")
    registered = await stack.executions.register(text)
    execution_id = await stack.executions.start(registered.path)
    events_seen: list[str] = []

    async def on_event(event) -> None:  # type: ignore[no-untyped-def]
        events_seen.append(event.type)
        if event.type == "step.started":
            await stack.executions.cancel(execution_id, "test cancels")  # type: ignore[union-attr]

    summary = await stack.executions.wait(execution_id, timeout_s=30, on_event=on_event)
    assert summary["status"] == "cancelled"
    assert summary["steps"]["long"]["error"]["kind"] == "cancelled"
    assert events_seen[-1] == "execution.cancelled"
