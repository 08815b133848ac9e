"""`noetl eval chaos`: kill one component of a running stack per round and check that nothing is lost.

The suite starts its own stack (`noetl dev up` in a scratch NOETL_HOME), registers a playbook whose
parallel loop appends one line per item to a file (its side effect), and for each round starts an
execution, kills one component with SIGKILL at a random point of the loop — a worker process, the
orchestrator (the serving process, which `noetl dev up` then starts again, as systemd would), the
nats-server or Postgres (which the stack restarts itself) — and waits for the execution to end. A
round reports: the status, items lost (not in the result, or never run), items run more than once
(side effects repeated: allowed only where an item was in flight at the kill), and the time from the
kill until items were being done again and until the execution ended.

Everything goes through the command line, as a user would do it; the stack is stopped at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals.suites.cli import SuiteCli

COMPONENTS = ("worker", "orchestrator", "nats", "postgres")
ROUND_TIMEOUT_S = 240.0

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: chaos_loop, path: chaos/loop}
workload: {items: 120, pause: 0.03, marks: ""}
workflow:
  - step: each
    loop:
      in: "{{ range(workload['items']) | list }}"
      iterator: i
      spec: {mode: parallel, max_in_flight: 8}
    tool:
      kind: python
      input: {i: "{{ i }}", marks: "{{ workload.marks }}", pause: "{{ workload.pause }}"}
      code: |
        import time
        time.sleep(pause)
        with open(marks, "a") as handle:
            handle.write(f"{i}\\n")
        result = i
"""


@dataclass
class Round:
    component: str
    execution_id: str | None = None
    status: str = "not started"
    items: int = 0
    lost: int = 0
    repeated: int = 0
    killed_pid: int | None = None
    killed_after_items: int = 0
    recovery_s: float | None = None  # the kill -> the next item done
    finish_s: float | None = None  # the kill -> the execution ended
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed" and self.lost == 0


@dataclass
class Report:
    rounds: list[Round] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rounds) and all(r.ok for r in self.rounds)

    def summary(self) -> dict[str, Any]:
        by: dict[str, dict[str, Any]] = {}
        for r in self.rounds:
            entry = by.setdefault(r.component, {"rounds": 0, "completed": 0, "lost": 0, "repeated": 0,
                                                "recovery_s": []})
            entry["rounds"] += 1
            entry["completed"] += r.status == "completed"
            entry["lost"] += r.lost
            entry["repeated"] += r.repeated
            if r.recovery_s is not None:
                entry["recovery_s"].append(r.recovery_s)
        for entry in by.values():
            times = sorted(entry.pop("recovery_s"))
            entry["recovery_s_median"] = round(times[len(times) // 2], 2) if times else None
            entry["recovery_s_max"] = round(times[-1], 2) if times else None
        return by

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rounds": [asdict(r) for r in self.rounds], "by_component": self.summary(),
                "summary": self.summary_line()}

    def summary_line(self) -> str:
        done = sum(r.status == "completed" for r in self.rounds)
        return (f"{done}/{len(self.rounds)} rounds completed, {sum(r.lost for r in self.rounds)} items lost, "
                f"{sum(r.repeated for r in self.rounds)} run more than once")


class Cli(SuiteCli):
    """The command line against the suite's own NOETL_HOME."""

    def __init__(self, home: Path) -> None:
        # `noetl status` during an outage: a short wait, then exit 3, and the suite asks again
        super().__init__(home, keep=("NOETL_IDLE_STOP",), NOETL_ACK_WAIT_S="5", NOETL_OUTAGE_WAIT_S="10")

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.home / "dev.json").read_text()))

    def component_pid(self, component: str) -> int:
        if component == "orchestrator":
            return int(self.state()["pid"])
        if component == "nats":
            return int(json.loads((self.home / "nats" / "server.json").read_text())["pid"])
        if component == "postgres":
            return int((self.home / "postgres" / "postmaster.pid").read_text().split()[0])
        report = json.loads((self.home / "dev-components.json").read_text())
        return int(next(c["pid"] for c in report["components"] if c["name"].startswith("worker:")))


def _marks(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _status(cli: Cli, execution_id: str) -> dict[str, Any] | None:
    """`noetl status ID --json`, or None while it cannot answer (a server is away)."""
    try:
        result = cli("status", execution_id, "--json", timeout=30)
        return dict(json.loads(result.stdout))
    except (subprocess.TimeoutExpired, ValueError):
        return None


def play_round(cli: Cli, component: str, rng: random.Random, items: int, scratch: Path) -> Round:
    outcome = Round(component=component)
    marks = scratch / f"marks-{component}-{rng.randrange(1 << 30)}.txt"
    payload = json.dumps({"items": items, "marks": str(marks)})
    started = cli("execute", "playbook", "chaos/loop", "--payload", payload, "--json")
    if started.returncode != 0:
        outcome.note = f"execute failed: {started.stderr.strip()[-300:]}"
        return outcome
    outcome.execution_id = str(json.loads(started.stdout)["execution_id"])
    kill_at = rng.randint(items // 8, items // 2)  # kill once this many items are done
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while len(_marks(marks)) < kill_at and time.monotonic() < deadline:
        time.sleep(0.02)
    outcome.killed_after_items = len(_marks(marks))
    outcome.killed_pid = cli.component_pid(component)
    with_kill = time.monotonic()
    os.kill(outcome.killed_pid, 9)
    if component == "orchestrator":  # the serving process is what a host's supervisor restarts
        up = cli("dev", "up", "--api-port", "0", timeout=180)
        if up.returncode != 0:
            outcome.note = f"dev up after the kill failed: {up.stderr.strip()[-300:]}"
    seen = outcome.killed_after_items
    while time.monotonic() < deadline:
        done = len(_marks(marks))
        if outcome.recovery_s is None and done > seen:
            outcome.recovery_s = round(time.monotonic() - with_kill, 2)
        doc = _status(cli, outcome.execution_id)
        if doc is not None and doc.get("status") in ("completed", "failed", "cancelled"):
            outcome.finish_s = round(time.monotonic() - with_kill, 2)
            if outcome.recovery_s is None:  # the items left ran before the next look: recovered by the end
                outcome.recovery_s = outcome.finish_s
            outcome.status = str(doc["status"])
            result = (doc.get("steps", {}).get("each") or {}).get("result") or []
            outcome.items = len(result)
            ran = Counter(_marks(marks))
            outcome.lost = len([i for i in range(items) if i not in ran or result[i:i + 1] != [i]])
            outcome.repeated = sum(1 for count in ran.values() if count > 1)
            return outcome
        time.sleep(0.2)
    outcome.status = "timed out"
    outcome.lost = len(set(range(items)) - set(_marks(marks)))
    return outcome


def run(rounds: int, seed: int = 0, items: int = 120, components: tuple[str, ...] = COMPONENTS,
        progress: Any = None) -> Report:
    """`rounds` rounds, the components in turn, on a stack of the suite's own (stopped at the end)."""
    rng = random.Random(seed)
    scratch = Path(tempfile.mkdtemp(prefix="noetl-chaos-"))
    cli = Cli(scratch / "home")
    report = Report()
    try:
        up = cli("dev", "up", "--api-port", "0", timeout=180)
        if up.returncode != 0:
            raise RuntimeError(f"`noetl dev up` failed: {up.stderr[-2000:]}")
        playbook = scratch / "chaos_loop.yaml"
        playbook.write_text(PLAYBOOK)
        registered = cli("register", str(playbook))
        if registered.returncode != 0:
            raise RuntimeError(f"`noetl register` failed: {registered.stderr[-2000:]}")
        for number in range(rounds):
            component = components[number % len(components)]
            played = play_round(cli, component, rng, items, scratch)
            report.rounds.append(played)
            if progress is not None:
                progress(f"round {number + 1}/{rounds} {component}: {played.status}, lost {played.lost}, "
                         f"repeated {played.repeated}, recovery {played.recovery_s} s")
            if not played.ok:  # the next round starts on a healthy stack
                cli("dev", "up", "--api-port", "0", timeout=180)
    finally:
        cli("dev", "down", timeout=180)
        shutil.rmtree(scratch, ignore_errors=True)
    return report
