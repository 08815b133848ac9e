"""`noetl eval cluster`, short: on a local cluster (three NATS nodes, two servers, three worker hosts in
network namespaces of their own), a NATS node killed, the orchestrator owning the execution's partition
killed, and a worker host cut off for 20 s, each during a parallel loop with a side effect per item; and
the scaling runs' path with two worker hosts. The long run is `noetl eval cluster --json`
(docs/performance.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

NEEDS = "root and the `ip` command (network namespaces for the worker hosts)"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason=f"needs {NEEDS}")
def test_a_loop_survives_a_nats_node_the_owning_orchestrator_and_a_cut_off_worker_host_with_every_item_once(
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    ran = subprocess.run([sys.executable, "-m", "noetl.cli", "eval", "cluster", "--items", "800",
                          "--hosts", "2", "--scaling-items", "100", "--json"],
                         capture_output=True, text=True, env=env, timeout=1200, stdin=subprocess.DEVNULL)
    report = json.loads(ran.stdout)
    rounds = {r["fault"]: r for r in report["rounds"]}
    assert set(rounds) == {"nats", "orchestrator", "network"}, ran.stderr[-3000:]
    for fault, played in rounds.items():
        assert played["status"] == "completed", (fault, played, ran.stderr[-3000:])
        assert played["lost"] == 0 and played["in_result"] == 800, (fault, played)
        assert played["repeated_not_in_flight"] == 0, (fault, played)
        assert played["ran_at_fault"] < 800, (fault, played)  # the fault came mid-loop
        assert played["recovery_s"] is not None and played["finish_s"] is not None, (fault, played)
        assert played["ok"], (fault, played)
    assert rounds["network"]["rejoined_s"] is not None  # the cut host is heard from after the restore
    assert [(s["hosts"], s["loop"], s["status"]) for s in report["scaling"]] == [
        (2, "light", "completed"), (2, "python_20ms", "completed")]
    assert all(s["items_per_s"] > 0 for s in report["scaling"])
    assert ran.returncode == 0 and report["ok"], report["summary"]
