"""`noetl dev up` runs what `noetl server start` runs: the indexer and the proposals agent come up with the
stack, so a developer's machine closes the loop by itself (a new flaky failure becomes a proposal)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Noetl, dev_stack, make_playbook
from tests.harness.polling import wait_for
from tests.integration.policies.test_closed_loop import FLAKY


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Noetl]:
    home, scratch = tmp_path_factory.mktemp("noetl-insights"), tmp_path_factory.mktemp("playbooks-insights")
    with dev_stack(home, scratch, 2, insights=True) as cli:
        yield cli


def _components(cli: Noetl) -> dict[str, dict[str, Any]]:
    result = cli("dev", "status", "--json")
    return {c["name"]: c for c in json.loads(result.stdout)["components"]}


def _proposals(cli: Noetl, path: str) -> list[dict[str, Any]]:
    result = cli("proposals", "list", "--path", path, "--json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_dev_up_runs_the_indexer_and_the_proposals_agent_by_default(stack: Noetl) -> None:
    components = _components(stack)
    assert components["indexer"]["status"] == "up" and components["indexer"]["pid"]
    assert components["agent"]["status"] == "up" and components["agent"]["pid"]


def test_a_new_flaky_failure_on_the_dev_stack_becomes_a_proposed_retry_with_nobody_asking(
        stack: Noetl, tmp_path: Path) -> None:
    name = f"flaky_{uuid.uuid4().hex[:8]}"
    playbook = stack.as_file(make_playbook(name, FLAKY))
    counter = tmp_path / "counter"
    statuses = [stack.run_json(playbook, {"counter": str(counter)})[1]["status"] for _ in range(5)]
    assert statuses == ["failed", "completed", "failed", "completed", "failed"]
    [proposal] = wait_for(lambda: _proposals(stack, f"e2e/{name}") or None, timeout_s=90,
                          what="the dev stack's agent to propose a change",
                          detail=lambda: _proposals(stack, f"e2e/{name}"))
    assert proposal["state"] == "proposed" and proposal["author"] == "agent:proposals"
    assert proposal["target"]["step"] == "fetch" and proposal["change"]["retry"]
