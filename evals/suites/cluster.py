"""`noetl eval cluster`: faults on a cluster on one machine, and how throughput scales with worker hosts.

Each fault round starts its own cluster (`noetl dev cluster up --nats 3 --servers 2 --workers 3
--isolate`: three NATS nodes, two servers sharing the orchestration partitions, three worker hosts, each
in a network namespace of its own), registers a playbook whose parallel loop appends one line per item to
a file (its side effect) and returns the item, starts it through a server's API and, once a quarter of
the items ran, injects one fault:

- `nats`: SIGKILL of one NATS node;
- `orchestrator`: SIGKILL of the server whose orchestrator owns the execution's partition (from
  GET /api/orchestrators); the other server takes the partition over;
- `network`: one worker host's link cut for CUT_S seconds (`noetl dev cluster cut --for`), then restored.

A round passes when the execution completes with every item in its result once and in order, and every
item run more than once was in flight at the fault (its first run among the first `done at the fault +
slots of all worker hosts` lines). It reports the recovery (the fault -> the next item stored), the
longest stall between stored items after the fault, and the time to the end.

Scaling: `--nats 1 --servers 1 --workers K` for K in 1, 2, 4, each running a CPU-light loop (a python step
returning its item) and a loop of 20 ms python steps; items/s from the execution's start to its end as
the log records them.

Everything goes through the command line and the REST API, as a user would; every cluster is stopped.
Workers take commands back after NOETL_ACK_WAIT_S=5 s here (30 s by default), so a cut host's items run
elsewhere within the cut.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.protocol.partitions import partition_of
from evals.suites.cli import SuiteCli

FAULTS = ("nats", "orchestrator", "network")
HOSTS = (1, 2, 4)
CUT_S = 20.0
WORKER_SLOTS = 4  # `noetl worker start`'s default concurrency, per worker host
ROUND_TIMEOUT_S = 300.0
UP_TIMEOUT_S = 240.0
POLL_S = 0.1
ITEM_PAUSE_S = 0.05  # each fault round's item takes this long: 1,000 items last ~4 s on 12 slots
PATH = "eval/cluster_loop"

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: cluster_loop, path: eval/cluster_loop}
workload: {items: 1000, pause: 0.0, marks: ""}
workflow:
  - step: each
    loop:
      in: "{{ range(workload['items']) | list }}"
      iterator: i
      spec: {mode: parallel}
    tool:
      kind: python
      input: {i: "{{ i }}", marks: "{{ workload.marks }}", pause: "{{ workload.pause }}"}
      code: |
        import time
        if pause:
            time.sleep(pause)
        if marks:
            with open(marks, "a") as handle:
                handle.write(f"{i}\\n")
        result = i
"""


class ClusterEvalError(RuntimeError):
    """The eval could not run (a cluster did not start, no API answered)."""


@dataclass
class Round:
    fault: str
    items: int
    execution_id: str | None = None
    status: str = "not started"
    victim: str | None = None
    fault_after_items: int = 0  # items stored when the fault came
    ran_at_fault: int = 0  # items run (side effects written) when the fault had been done
    in_result: int = 0
    lost: int = 0  # not in the result at their place, or never run
    repeated: int = 0  # run more than once
    repeated_not_in_flight: int = 0  # ... of which the first run came after the fault's in-flight window
    recovery_s: float | None = None  # the fault -> the next item stored
    longest_stall_s: float | None = None  # the longest wait between stored items after the fault
    finish_s: float | None = None  # the fault -> the execution ended
    rejoined_s: float | None = None  # a cut host: the fault -> heard from again (after the restore)
    note: str | None = None

    @property
    def ok(self) -> bool:
        return (self.status == "completed" and self.lost == 0 and self.in_result == self.items
                and self.repeated_not_in_flight == 0 and self.ran_at_fault < self.items)


@dataclass
class Scaling:
    hosts: int
    loop: str  # light | python_20ms
    items: int
    seconds: float | None = None
    items_per_s: float | None = None
    status: str = "not run"


@dataclass
class Report:
    rounds: list[Round] = field(default_factory=list)
    scaling: list[Scaling] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rounds) and all(s.status == "completed" for s in self.scaling)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rounds": [{**asdict(r), "ok": r.ok} for r in self.rounds],
                "scaling": [asdict(s) for s in self.scaling], "summary": self.summary_line()}

    def summary_line(self) -> str:
        done = sum(r.ok for r in self.rounds)
        parts = [f"{done}/{len(self.rounds)} fault rounds passed"] if self.rounds else []
        for r in self.rounds:
            parts.append(f"{r.fault}: {r.status}, lost {r.lost}, repeated {r.repeated}, "
                         f"recovery {r.recovery_s} s, stall {r.longest_stall_s} s")
        by: dict[str, list[str]] = {}
        for s in self.scaling:
            by.setdefault(s.loop, []).append(f"{s.hosts} host(s) {s.items_per_s} items/s")
        parts += [f"{loop}: {', '.join(figures)}" for loop, figures in by.items()]
        return "; ".join(parts)


class Cli(SuiteCli):
    """The command line against the eval's NOETL_HOME (one cluster at a time)."""

    def __init__(self, home: Path) -> None:
        super().__init__(home, NOETL_ACK_WAIT_S="5")

    def up(self, *options: str) -> dict[str, Any]:
        started = self("dev", "cluster", "up", *options, "--json", timeout=UP_TIMEOUT_S)
        if started.returncode != 0:
            raise ClusterEvalError(f"`noetl dev cluster up {' '.join(options)}` failed (exit "
                                   f"{started.returncode}): {started.stderr.strip()[-2000:]}")
        return dict(json.loads(started.stdout))

    def down(self) -> None:
        self("dev", "cluster", "down", timeout=180)


class Api:
    """The REST API of the cluster's servers: each call goes to the first server that answers."""

    def __init__(self, urls: list[str], token: str) -> None:
        self.urls = list(urls)
        self.token = token

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> Any:
        errors = []
        for url in self.urls:
            request = urllib.request.Request(f"{url}{path}", data=body, method=method, headers={
                "Authorization": f"Bearer {self.token}", "Content-Type": content_type})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise ClusterEvalError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc
                errors.append(f"{url}: {exc.code}")
            except (OSError, TimeoutError) as exc:  # that server is down: ask the next
                errors.append(f"{url}: {exc}")
        raise ClusterEvalError(f"no server answered {method} {path}: {'; '.join(errors)}")

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, document: dict[str, Any]) -> Any:
        return self.call("POST", path, json.dumps(document).encode())

    def register(self, text: str) -> None:
        self.call("POST", "/api/catalog/register", text.encode(), "application/yaml")

    def start(self, payload: dict[str, Any]) -> str:
        return str(self.post("/api/execute", {"path": PATH, "payload": payload})["execution_id"])


class Progress:
    """The items of one execution as they are stored: a poll reads the events stored since the last."""

    def __init__(self, api: Api, execution_id: str) -> None:
        self.api = api
        self.execution_id = execution_id
        self.after = 0
        self.stored_at: list[float] = []  # monotonic time each stored item was first seen
        self.events: list[dict[str, Any]] = []

    def poll(self) -> None:
        while True:
            try:
                page = self.api.get(f"/api/executions/{self.execution_id}/events?after_seq={self.after}"
                                    "&limit=1000")
            except ClusterEvalError:
                return  # no server answers just now: the next poll asks again
            now = time.monotonic()
            for event in page["items"]:
                self.events.append(event)
                if event["type"] == "loop.item.succeeded":
                    self.stored_at.append(now)
            if page.get("next_after_seq") is None:
                if page["items"]:
                    self.after = int(page["items"][-1]["seq"])
                return
            self.after = int(page["next_after_seq"])

    def ended(self) -> str | None:
        for event in reversed(self.events):
            if event["type"] in ("execution.completed", "execution.failed", "execution.cancelled"):
                return str(event["type"].split(".")[1])
        return None


def _live_workers(api: Api) -> int:
    try:
        return sum(len(pool["workers"]) for pool in api.get("/api/pools")["items"])
    except ClusterEvalError:
        return 0


def _marks(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise ClusterEvalError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def _inject(fault: str, cluster: dict[str, Any], api: Api, cli: Cli, execution_id: str,
            rng: random.Random) -> str:
    """Do the fault now; what it hit."""
    components = cluster["components"]
    if fault == "nats":
        node = rng.choice([c for c in components if c["kind"] == "nats"])
        os.kill(int(node["pid"]), signal.SIGKILL)
        return f"{node['name']} (pid {node['pid']})"
    if fault == "orchestrator":
        partition = partition_of(execution_id)
        owners = [m for m in api.get("/api/orchestrators")["members"]
                  if m["live"] and partition in m["partitions"]]
        if not owners:
            raise ClusterEvalError(f"no live orchestrator owns partition {partition} of {execution_id}")
        pid = int(owners[0]["pid"])
        os.kill(pid, signal.SIGKILL)
        server = next((c["name"] for c in components if c.get("pid") == pid), f"pid {pid}")
        return f"{server} (pid {pid}, partition {partition})"
    if fault == "network":
        host = rng.choice([c for c in components if c["kind"] == "worker"])
        cut = cli("dev", "cluster", "cut", host["name"], "--for", f"{CUT_S:g}")
        if cut.returncode != 0:
            raise ClusterEvalError(f"cutting {host['name']} off failed: {cut.stderr.strip()[-500:]}")
        return f"{host['name']} cut for {CUT_S:g} s"
    raise ClusterEvalError(f"unknown fault '{fault}'; choose from {', '.join(FAULTS)}")


def play_fault(cli: Cli, fault: str, items: int, rng: random.Random, scratch: Path) -> Round:
    """One round on a cluster of its own."""
    played = Round(fault=fault, items=items)
    try:
        cluster = cli.up("--nats", "3", "--servers", "2", "--workers", "3",
                         *(("--isolate",) if fault == "network" else ()))
        api = Api(cluster["api_urls"], cluster["admin_token"])
        api.register(PLAYBOOK)
        marks = scratch / f"marks-{fault}-{rng.randrange(1 << 30)}.txt"
        played.execution_id = api.start({"items": items, "marks": str(marks), "pause": ITEM_PAUSE_S})
        progress = Progress(api, played.execution_id)
        _wait(lambda: len(_marks(marks)) >= items // 4, ROUND_TIMEOUT_S, "a quarter of the items to run")
        progress.poll()
        played.fault_after_items = len(progress.stored_at)
        at = time.monotonic()  # (a cut goes through the command line: its second counts in the recovery)
        played.victim = _inject(fault, cluster, api, cli, played.execution_id, rng)
        written_at_fault = len(_marks(marks))  # a cut takes effect when the command line is done with it
        played.ran_at_fault = written_at_fault
        seen = len(progress.stored_at)
        _wait(lambda: progress.poll() or progress.ended() is not None, ROUND_TIMEOUT_S,
              "the execution to end")
        played.finish_s = round(time.monotonic() - at, 2)
        after = [t for t in progress.stored_at[seen:]]
        if after:
            played.recovery_s = round(after[0] - at, 2)
            gaps = [b - a for a, b in zip([at, *after], after, strict=False)]
            played.longest_stall_s = round(max(gaps), 2)
        played.status = progress.ended() or "unknown"
        if played.ran_at_fault >= items:
            played.note = "the fault came after every item had run: use more --items"
        doc = api.get(f"/api/executions/{played.execution_id}")
        result = (doc.get("steps", {}).get("each") or {}).get("result") or []
        played.in_result = len(result)
        ran = _marks(marks)
        counts = Counter(ran)
        played.lost = len([i for i in range(items) if counts[i] == 0 or result[i:i + 1] != [i]])
        played.repeated = sum(1 for c in counts.values() if c > 1)
        window = written_at_fault + WORKER_SLOTS * 3
        first_run = {item: index for index, item in reversed(list(enumerate(ran)))}
        played.repeated_not_in_flight = sum(1 for item, c in counts.items()
                                            if c > 1 and first_run[item] >= window)
        if fault == "network":  # restored after CUT_S: the host is heard from again
            hosts = sum(1 for c in cluster["components"] if c["kind"] == "worker")
            _wait(lambda: _live_workers(api) >= hosts, CUT_S + 60, "the cut host to be heard from again")
            played.rejoined_s = round(time.monotonic() - at, 2)
    except (ClusterEvalError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
        played.note = str(exc)[-1000:]
        if played.status == "not started" and played.execution_id:
            played.status = "timed out"
    finally:
        cli.down()
    return played


def _duration_s(events: list[dict[str, Any]]) -> float | None:
    stamps = {e["type"]: e["timestamp"] for e in events if e["type"].startswith("execution.")}
    if "execution.started" not in stamps or "execution.completed" not in stamps:
        return None
    started = datetime.fromisoformat(stamps["execution.started"])
    ended = datetime.fromisoformat(stamps["execution.completed"])
    return (ended - started).total_seconds()


def play_scaling(cli: Cli, hosts: int, items: int) -> list[Scaling]:
    """A CPU-light loop and a loop of 20 ms python steps on `hosts` worker hosts."""
    found = [Scaling(hosts=hosts, loop="light", items=items), Scaling(hosts=hosts, loop="python_20ms",
                                                                         items=items)]
    try:
        cluster = cli.up("--nats", "1", "--servers", "1", "--workers", str(hosts))
        api = Api(cluster["api_urls"], cluster["admin_token"])
        api.register(PLAYBOOK)
        _wait(lambda: _live_workers(api) >= hosts, 60, f"{hosts} worker host(s) to be heard from")
        for entry, pause in zip(found, (0.0, 0.02), strict=True):
            progress = Progress(api, api.start({"items": items, "pause": pause}))
            _wait(lambda progress=progress: progress.poll() or progress.ended() is not None,
                  ROUND_TIMEOUT_S, f"the {entry.loop} loop to end")
            entry.status = progress.ended() or "unknown"
            seconds = _duration_s(progress.events)
            if seconds:
                entry.seconds = round(seconds, 3)
                entry.items_per_s = round(items / seconds, 1)
    except (ClusterEvalError, subprocess.TimeoutExpired, KeyError, ValueError) as exc:
        for entry in found:
            if entry.status == "not run":
                entry.status = f"failed: {str(exc)[-300:]}"
    finally:
        cli.down()
    return found


def run(items: int = 1000, faults: tuple[str, ...] = FAULTS, hosts: tuple[int, ...] = HOSTS,
        scaling_items: int = 2000, seed: int = 0, progress: Any = None) -> Report:
    """The fault rounds, then the scaling runs, each on a cluster of its own under a scratch home."""
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ClusterEvalError(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
    rng = random.Random(seed)
    scratch = Path(tempfile.mkdtemp(prefix="noetl-cluster-eval-"))
    cli = Cli(scratch / "home")
    report = Report()
    try:
        for fault in faults:
            played = play_fault(cli, fault, items, rng, scratch)
            report.rounds.append(played)
            if progress is not None:
                progress(f"{fault}: {played.status} ({'ok' if played.ok else 'FAILED'}), lost {played.lost}, "
                         f"repeated {played.repeated}, recovery {played.recovery_s} s, longest stall "
                         f"{played.longest_stall_s} s, end {played.finish_s} s after the fault"
                         + (f" [{played.note}]" if played.note else ""))
        for count in hosts:
            measured = play_scaling(cli, count, scaling_items)
            report.scaling.extend(measured)
            if progress is not None:
                for entry in measured:
                    progress(f"{count} worker host(s), {entry.loop}: {entry.items_per_s} items/s "
                             f"({entry.status})")
    finally:
        cli.down()
        shutil.rmtree(scratch, ignore_errors=True)
    return report
