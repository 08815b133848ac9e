"""`noetl dev cluster`: three NATS nodes, Postgres, servers and worker hosts as real detached processes,
driven only through the command line; playbooks run through a server's API with a token. With
--isolate each worker host runs in a network namespace of its own, and `cut` partitions one off.
Nothing sleeps to wait: every wait is a bounded subprocess or a bounded poll; `down` always runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.local_cluster import _processes_of
from engine.runtime.processes import pid_alive
from tests.e2e.helpers import Noetl, make_playbook
from tests.harness.polling import wait_for

UP_TIMEOUT_S = 180.0
LOOP = """\
workload: {items: [1, 2, 3, 4, 5, 6]}
workflow:
  - step: start
    loop: {in: "{{ workload.items }}", iterator: x}
    tool: {kind: python, input: {x: "{{ x }}"}, code: "result = x * 2"}
    next: {arcs: [{step: done}]}
  - step: done
    tool: {kind: noop}
"""


class Cluster:
    """One `noetl dev cluster` under its own NOETL_HOME: its `up` document, the CLI, and its API."""

    def __init__(self, cli: Noetl, up: dict[str, Any]) -> None:
        self.cli = cli
        self.up = up
        self.token: str = up["admin_token"]

    def status(self) -> tuple[int, dict[str, Any]]:
        result = self.cli("dev", "cluster", "status", "--json")
        return result.returncode, json.loads(result.stdout)

    def component(self, name: str) -> dict[str, Any]:
        return next(c for c in self.status()[1]["components"] if c["name"] == name)

    def api(self, index: int = 0) -> Noetl:
        """The command line as a client of server `index`'s API."""
        url = self.up["api_urls"][index]
        return Noetl(self.cli.home, self.cli.scratch, {**self.cli.env, "NOETL_SERVER_URL": url,
                                                       "NOETL_TOKEN": self.token})

    def run(self, playbook: str, index: int = 0) -> dict[str, Any]:
        """Register `playbook` and execute it through server `index`'s API to its end; its document."""
        client = self.api(index)
        path = playbook.split("path: ")[1].split("}")[0]
        registered = client("register", str(client.write(playbook)))
        assert registered.returncode == 0, registered.stderr
        ran = client("execute", "playbook", path, "--wait", "--json", timeout=120)
        assert ran.returncode == 0, f"{ran.stdout[-2000:]}\n{ran.stderr[-2000:]}"
        doc: dict[str, Any] = json.loads(ran.stdout)
        return doc

    def live_workers(self, index: int = 0) -> int:
        """How many workers the API of server `index` hears from (GET /api/pools)."""
        request = urllib.request.Request(f"{self.up['api_urls'][index]}/api/pools",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            pools = json.loads(response.read())["items"]
        return sum(len(pool["workers"]) for pool in pools)


def leftovers(doc: dict[str, Any]) -> list[str]:
    """What of the cluster `doc` describes still exists: processes by pid, namespaces, links, addresses."""
    found = [f"{c['name']} (pid {c['pid']})" for c in doc["components"] if c["pid"] and pid_alive(c["pid"])]
    found += [f"pid {pid} of {doc['home']}" for pid in _processes_of(Path(doc["home"]))]
    if shutil.which("ip") is not None:
        cid = doc["id"]
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        addresses = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True,
                                   text=True).stdout
        found += [line for line in namespaces.splitlines() if f"noetl-{cid}-" in line]
        found += [line for line in links.splitlines() if f"nl{cid}" in line]
        found += [line for line in addresses.splitlines() if f"lo:nl{cid}" in line]
    return found


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`start_cluster(*options)` runs `noetl dev cluster up --json` with them under a fresh NOETL_HOME;
    `noetl dev cluster down` runs at the end whatever happened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env.update(NOETL_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    (tmp_path / "scratch").mkdir()
    cli = Noetl(home=tmp_path / "home", scratch=tmp_path / "scratch", env=env)
    started: list[Cluster] = []

    def start(*options: str) -> Cluster:
        up = cli("dev", "cluster", "up", *options, "--json", timeout=UP_TIMEOUT_S)
        assert up.returncode == 0, f"`dev cluster up` failed (exit {up.returncode}): {up.stderr[-4000:]}"
        cluster = Cluster(cli, json.loads(up.stdout))
        started.append(cluster)
        return cluster

    try:
        yield start
    finally:
        cli("dev", "cluster", "down", timeout=120)


def playbook(name: str) -> str:
    return make_playbook(f"cluster_{name}_{uuid.uuid4().hex[:6]}", LOOP)


def assert_completed(doc: dict[str, Any]) -> None:
    assert doc["status"] == "completed", doc
    assert doc["steps"]["start"]["result"] == [2, 4, 6, 8, 10, 12], doc["steps"]


def test_a_cluster_of_three_nats_nodes_two_servers_and_two_worker_hosts_runs_a_playbook_and_goes_away(
        start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster("--nats", "3", "--servers", "2", "--workers", "2")
    code, doc = cluster.status()
    assert code == 0 and doc["status"] == "up", doc
    kinds = [c["kind"] for c in doc["components"]]
    assert kinds == ["nats"] * 3 + ["postgres"] + ["server"] * 2 + ["worker"] * 2, kinds
    assert all(c["alive"] for c in doc["components"]), doc
    assert len(doc["api_urls"]) == 2 and doc["nats_url"].count(",") == 2
    nats = [c for c in doc["components"] if c["kind"] == "nats"]
    assert doc["nats_url"] == ",".join(c["urls"]["client"] for c in nats)

    # through the second server's API: whichever server orchestrates, the run completes
    assert_completed(cluster.run(playbook("api"), index=1))
    for node in nats:  # every node holds the bus's two streams with three replicas
        jsz = f"{node['urls']['monitor']}/jsz?streams=true&config=true"
        with urllib.request.urlopen(jsz, timeout=5) as r:
            streams = [s for a in json.loads(r.read())["account_details"] for s in a["stream_detail"]]
        assert sorted(s["config"]["num_replicas"] for s in streams) == [3, 3], (node["name"], streams)

    refused = cluster.cli("dev", "cluster", "cut", "worker-0")
    assert refused.returncode == 2 and "no network link of its own" in refused.stderr, refused.stderr

    # a crash of a NATS node, a server and a worker host: status says so, and down still removes
    # everything (the worker's python runners included)
    for name in ("nats-2", "server-0", "worker-0"):
        os.kill(cluster.component(name)["pid"], 9)
    wait_for(lambda: cluster.status()[0] == 3, timeout_s=10, what="status to report the killed members")
    dead = sorted(c["name"] for c in cluster.status()[1]["components"] if not c["alive"])
    assert dead == ["nats-2", "server-0", "worker-0"], dead

    down = cluster.cli("dev", "cluster", "down", "--json", timeout=120)
    assert down.returncode == 0, down.stderr
    assert leftovers(doc) == []
    assert cluster.status()[0] == 1
    again = cluster.cli("dev", "cluster", "down", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "down", again.stderr


def _can_isolate() -> str | None:
    if not os.uname().sysname == "Linux":
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "--isolate needs root (CAP_NET_ADMIN) to make network namespaces"
    return None


@pytest.mark.skipif(_can_isolate() is not None, reason=str(_can_isolate()))
def test_isolated_worker_hosts_run_playbooks_and_one_cut_off_leaves_the_cluster_running_until_restored(
        start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster("--nats", "3", "--servers", "1", "--workers", "2", "--isolate")
    code, doc = cluster.status()
    assert code == 0 and doc["isolate"] is True, doc
    workers = [c for c in doc["components"] if c["kind"] == "worker"]
    assert [w["link"]["state"] for w in workers] == ["up", "up"]
    assert all(w["namespace"].startswith(f"noetl-{doc['id']}-") for w in workers)
    assert all(c["address"] == doc["service_address"] for c in doc["components"] if c["kind"] == "nats")
    wait_for(lambda: cluster.live_workers() == 2, timeout_s=30, what="both worker hosts to heartbeat")
    assert_completed(cluster.run(playbook("isolated")))

    cut = cluster.cli("dev", "cluster", "cut", "worker-0", "--json")
    assert cut.returncode == 0, cut.stderr
    code, doc = cluster.status()
    assert doc["cut"] == ["worker-0"] and code == 0, doc  # cut off, still alive
    assert cluster.component("worker-0")["link"]["state"] == "cut"
    # its heartbeats stop reaching the API (and its standing pull requests expire meanwhile)
    wait_for(lambda: cluster.live_workers() == 1, timeout_s=30, what="the cut worker host to be missed")
    assert_completed(cluster.run(playbook("partitioned")))

    restored = cluster.cli("dev", "cluster", "restore", "worker-0", "--json")
    assert restored.returncode == 0, restored.stderr
    assert cluster.status()[1]["cut"] == []
    wait_for(lambda: cluster.live_workers() == 2, timeout_s=60, what="the restored worker host to heartbeat")

    # cut for a while: the link comes back by itself
    timed = cluster.cli("dev", "cluster", "cut", "worker-1", "--for", "1", "--json")
    assert timed.returncode == 0 and json.loads(timed.stdout)["link"]["state"] == "cut", timed.stderr
    wait_for(lambda: cluster.component("worker-1")["link"]["state"] == "up", timeout_s=15,
             what="the link cut --for 1 s to come back")

    down = cluster.cli("dev", "cluster", "down", "--json", timeout=120)
    assert down.returncode == 0, down.stderr
    assert leftovers(doc) == []
