"""Triggers on the dev stack, driven through the command line: a playbook's declared triggers are
registered with it and fire on `noetl dev up`, and re-registering without them removes them."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from tests.e2e.helpers import Noetl
from tests.harness.polling import wait_for

DECLARING = """
triggers:
  - name: often
    every: 1s
    concurrency: skip
    payload: {at: "{{ firing.scheduled_at }}"}
  - name: hook
    webhook: true
workflow:
  - step: start
    tool:
      kind: python
      input: {w: "{{ workload }}"}
      code: |
        result = w
"""
PLAIN = """
workflow:
  - step: start
    tool: {kind: noop}
"""


def _show(noetl: Noetl, trigger_id: str) -> dict[str, Any]:
    result = noetl("trigger", "show", trigger_id, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _status(noetl: Noetl, execution_id: str) -> dict[str, Any] | None:
    result = noetl("status", execution_id, "--json")
    if result.returncode != 0:
        return None
    doc = dict(json.loads(result.stdout))
    return doc if doc["status"] in ("completed", "failed") else None


def test_declared_triggers_fire_on_the_dev_stack_and_go_when_the_playbook_no_longer_declares_them(
        noetl: Noetl, playbook: Any) -> None:
    file = noetl.write(playbook(DECLARING))
    result = noetl("register", str(file), "--json")
    assert result.returncode == 0, result.stderr
    registered = json.loads(result.stdout)
    triggers = {t["name"]: t for t in registered["triggers"]}
    assert set(triggers) == {"often", "hook"} and triggers["hook"]["secret"]
    try:
        often = triggers["often"]["id"]

        def started() -> dict[str, Any] | None:
            firings = [f for f in _show(noetl, often)["firings"] if f["status"] == "started"]
            return firings[-1] if firings else None

        firing = wait_for(started, timeout_s=60, what="a firing of the declared every-1s trigger")
        summary = wait_for(lambda: _status(noetl, firing["execution_id"]), timeout_s=60,
                           what="the triggered run to end")
        assert summary["status"] == "completed", summary

        api_url = json.loads((noetl.home / "dev.json").read_text())["api_url"]
        body = b'{"order": 9}'
        key = triggers["hook"]["secret"].encode()
        signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        answer = httpx.post(api_url + triggers["hook"]["webhook_path"], content=body, timeout=30,
                            headers={"Content-Type": "application/json", "X-NoETL-Signature": signature,
                                     "X-NoETL-Delivery": "e2e-1"})
        assert answer.status_code == 202, answer.text
        hooked = wait_for(lambda: _status(noetl, answer.json()["execution_id"]), timeout_s=60,
                          what="the webhook's run to end")
        assert hooked["status"] == "completed"
    finally:  # the session's stack goes on: its every-1s trigger must not
        file.write_text(file.read_text().split("triggers:")[0] + PLAIN.lstrip("\n"))
        result = noetl("register", str(file), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["triggers"] == [], result.stderr
    listed = noetl("trigger", "list", "--path", registered["path"], "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
