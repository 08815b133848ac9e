"""`noetl trigger …` through the command line against a running server (NOETL_SERVER_URL)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from tests.harness.polling import poll
from tests.integration.api.helpers import playbook, register, unique
from tests.integration.triggers.conftest import TriggerApi

pytestmark = pytest.mark.anyio


async def noetl(api: TriggerApi, *args: str, role: str = "operator") -> tuple[int, str, str]:
    env = {**os.environ, "NOETL_SERVER_URL": api.url, "NOETL_TOKEN": api.tokens[role],
           "NOETL_HELP_CACHE": "0"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "noetl.cli", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_line_creates_shows_pauses_resumes_and_deletes_a_trigger(api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = unique("cli")
        await register(client, playbook(path, "workflow:\n  - step: start\n    tool: {kind: noop}\n"))
    code, out, err = await noetl(api, "trigger", "create", path, "--every", "1s", "--concurrency", "allow",
                                 "--json")
    assert code == 0, err
    trigger = json.loads(out)
    assert trigger["kind"] == "interval" and trigger["path"] == path and trigger["id"]

    async def fired() -> dict[str, Any] | None:
        code, out, err = await noetl(api, "trigger", "show", trigger["id"], "--json", role="viewer")
        assert code == 0, err
        shown = json.loads(out)
        started = [f for f in shown["firings"] if f["status"] == "started"]
        return shown if started else None

    shown = await poll(fired, timeout_s=60, what="a firing shown by `noetl trigger show`")
    firing = next(f for f in shown["firings"] if f["status"] == "started")
    assert set(firing) >= {"id", "scheduled_at", "execution_id", "status"} and firing["execution_id"]
    code, out, _ = await noetl(api, "trigger", "list")
    assert code == 0 and trigger["id"] in out and "every 1s" in out
    code, out, _ = await noetl(api, "trigger", "pause", trigger["id"])
    assert code == 0 and "paused" in out
    code, out, _ = await noetl(api, "trigger", "list", "--path", path, "--json")
    assert json.loads(out)[0]["paused"] is True
    code, out, _ = await noetl(api, "trigger", "resume", trigger["id"], "--json")
    assert code == 0 and json.loads(out)["paused"] is False
    code, out, _ = await noetl(api, "trigger", "delete", trigger["id"])
    assert code == 0 and "deleted" in out
    code, _, err = await noetl(api, "trigger", "show", trigger["id"])
    assert code != 0 and "not stored" in err


async def test_a_webhook_trigger_prints_its_secret_once_and_bad_definitions_are_refused(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = unique("cli_hook")
        await register(client, playbook(path, "workflow:\n  - step: start\n    tool: {kind: noop}\n"))
    code, out, err = await noetl(api, "trigger", "create", path, "--webhook")
    assert code == 0, err
    assert "shown only now" in err and len(out.strip()) >= 40
    code, _, err = await noetl(api, "trigger", "create", path, "--cron", "0 2 * * *", "--every", "1m")
    assert code == 2 and "exactly one of" in err
    code, _, err = await noetl(api, "trigger", "create", path, "--cron", "0 25 * * *")
    assert code != 0 and "hour" in err
    code, _, err = await noetl(api, "trigger", "create", path, "--every", "5m", role="viewer")
    assert code != 0 and "operator" in err
