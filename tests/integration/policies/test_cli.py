"""`noetl proposals ...` and `noetl policies show` as real processes: through the API with a token, and on
this machine's store without one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from tests.integration.policies.conftest import Loop

pytestmark = pytest.mark.anyio

PLAYBOOK = "workflow:\n  - step: work\n    tool: {kind: noop, result: 1}\n"


async def noetl(loop: Loop, *args: str, person: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in loop.env.items() if k not in ("NOETL_SERVER_URL", "NOETL_TOKEN")}
    if person is not None:
        env.update(NOETL_SERVER_URL=loop.url, NOETL_TOKEN=loop.tokens[person])
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "noetl.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def test_the_commands_through_the_api_and_on_the_local_store(loop: Loop) -> None:
    path = await loop.register(f"cli_{uuid.uuid4().hex[:8]}", PLAYBOOK)
    made = await noetl(loop, "proposals", "propose", "--path", path, "--step", "work", "--change",
                       '{"timeout_s": 30}', "--rationale", "a limit for work", "--json", person="agent")
    assert made.returncode == 0, made.stderr
    proposal_id = json.loads(made.stdout)["id"]

    refused = await noetl(loop, "proposals", "propose", "--path", path, "--step", "work", "--change",
                          '{"timeout_s": 99999}', "--rationale", "more", person="agent")
    assert refused.returncode == 2 and "guardrails" in refused.stderr and "open proposal" in refused.stderr

    listed = await noetl(loop, "proposals", "list", "--state", "proposed", "--json", person="viewer")
    assert listed.returncode == 0 and proposal_id in [p["id"] for p in json.loads(listed.stdout)]

    operator = await noetl(loop, "proposals", "approve", proposal_id, "--reason", "me", person="agent")
    assert operator.returncode == 3 and "approver" in operator.stderr
    approved = await noetl(loop, "proposals", "approve", proposal_id, "--reason", "fine", person="alice")
    assert approved.returncode == 0, approved.stderr
    assert "overlay version 1" in approved.stdout

    shown = await noetl(loop, "proposals", "show", proposal_id, person="viewer")
    assert shown.returncode == 0 and "applied" in shown.stdout and "alice: fine" in shown.stdout
    policies = await noetl(loop, "policies", "show", path, "--json", person="viewer")
    assert json.loads(policies.stdout)["steps"][0]["overlay"] == {"timeout_s": 30.0}

    rolled = await noetl(loop, "proposals", "rollback", proposal_id, "--reason", "not needed", person="bob")
    assert rolled.returncode == 0, rolled.stderr
    text = await noetl(loop, "policies", "show", path, "--step", "work", person="viewer")
    assert "version 2 {}" in text.stdout and "restores none" in text.stdout

    local = await noetl(loop, "proposals", "list", "--path", path, "--json")  # no server: the store itself
    assert local.returncode == 0, local.stderr
    assert [(p["id"], p["state"]) for p in json.loads(local.stdout)] == [(proposal_id, "rolled_back")]
    mine = await noetl(loop, "proposals", "propose", "--path", path, "--step", "work", "--change",
                       '{"timeout_s": 20}', "--rationale", "mine", "--json")
    assert mine.returncode == 0, mine.stderr
    own = await noetl(loop, "proposals", "approve", json.loads(mine.stdout)["id"], "--reason", "mine too")
    assert own.returncode == 3 and "four eyes" in own.stderr
    missing = await noetl(loop, "proposals", "show", "nope")
    assert missing.returncode == 2 and "not stored" in missing.stderr
