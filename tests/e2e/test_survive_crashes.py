"""Infrastructure crashes through the command line: the stack's own supervision of nats-server,
Postgres and worker processes (`noetl dev status`, `noetl dev up`), and the chaos suite that kills
each component mid-loop and counts what was lost (`noetl eval chaos`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.helpers import Noetl, dev_stack
from tests.harness.polling import wait_for

COMPONENTS = {"nats", "postgres", "worker:default", "orchestrator", "api", "indexer", "agent"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Noetl]:
    home, scratch = tmp_path_factory.mktemp("noetl-crash"), tmp_path_factory.mktemp("playbooks-crash")
    with dev_stack(home, scratch, 4) as cli:
        yield cli


def status(cli: Noetl) -> dict[str, Any]:
    result = cli("dev", "status", "--json")
    doc = json.loads(result.stdout)
    doc["exit"] = result.returncode
    return dict(doc)


def component(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["components"] if c["name"] == name)


def test_dev_status_lists_each_component_with_its_pid_and_a_killed_nats_server_comes_back_on_its_port(
        stack: Noetl) -> None:
    before = wait_for(lambda: (doc := status(stack))["exit"] == 0 and COMPONENTS <= {
        c["name"] for c in doc["components"]} and doc, timeout_s=60, what="every component to be listed",
        detail=lambda: status(stack))
    assert before["status"] == "up"
    assert all(c["pid"] for c in before["components"] if c["status"] != "off")
    nats = component(before, "nats")
    os.kill(nats["pid"], signal.SIGKILL)
    after = wait_for(lambda: (doc := status(stack))["exit"] == 0 and component(doc, "nats")["restarts"] >= 1
                     and doc, timeout_s=60, what="the killed nats-server to be restarted",
                     detail=lambda: status(stack))
    assert component(after, "nats")["pid"] != nats["pid"] and after["nats_url"] == before["nats_url"]
    code, doc = stack.run_json(REPO / "examples" / "01_hello.yaml")
    assert (code, doc["status"]) == (0, "completed")


def test_a_server_that_keeps_crashing_is_reported_and_dev_up_brings_it_back(stack: Noetl) -> None:
    for _ in range(6):  # more than the supervisor restarts within its window
        doc = wait_for(lambda: (d := status(stack))
                       and component(d, "postgres")["status"] in ("up", "crashed") and d, timeout_s=60,
                       what="postgres to be up or crashed", detail=lambda: status(stack))
        if component(doc, "postgres")["status"] == "crashed":
            break
        killed = component(doc, "postgres")["pid"]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda killed=killed: (c := component(status(stack), "postgres"))["pid"] != killed
                 or c["status"] == "crashed", timeout_s=60,
                 what="the killed postgres to be replaced or crashed", detail=lambda: status(stack))
    crashed = wait_for(lambda: (d := status(stack))["exit"] == 3 and d, timeout_s=60,
                       what="`dev status` to exit 3 (degraded)", detail=lambda: status(stack))
    assert crashed["status"] == "degraded"
    assert "not restarted again" in component(crashed, "postgres")["detail"]
    up = stack("dev", "up", "--api-port", "0", "--no-indexer", "--no-agent", timeout=180)
    assert up.returncode == 0, up.stderr
    revived = status(stack)
    assert revived["exit"] == 0 and component(revived, "postgres")["status"] == "up"
    # the orchestrator's leader lock lived on a connection to the killed server: it is taken again
    wait_for(lambda: component(status(stack), "orchestrator")["status"] == "up", timeout_s=30,
             what="the orchestrator to be up again", detail=lambda: status(stack))
    code, doc = stack.run_json(REPO / "examples" / "01_hello.yaml")
    assert (code, doc["status"]) == (0, "completed")


def test_the_chaos_suite_loses_no_item_when_a_worker_the_orchestrator_nats_or_postgres_is_killed() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    argv = [sys.executable, "-m", "noetl.cli", "eval", "chaos", "--rounds", "4", "--items", "60", "--json"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=1200,
                            stdin=subprocess.DEVNULL)
    report = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(report, indent=1)[:4000] + result.stderr[-2000:]
    rounds = report["rounds"]
    assert [r["component"] for r in rounds] == ["worker", "orchestrator", "nats", "postgres"]
    assert all(r["status"] == "completed" and r["lost"] == 0 and r["items"] == 60 for r in rounds), rounds
    assert all(r["recovery_s"] is not None for r in rounds), rounds
    assert report["summary"].startswith("4/4 rounds completed, 0 items lost")
