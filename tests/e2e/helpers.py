"""What the end-to-end tests share: the command line against the session's stack, inline playbooks
with unique catalog names, and small readers of `noetl run --json` documents and event lists."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

CLI_TIMEOUT_S = 120.0  # any single CLI call
RUN_TIMEOUT_S = 60.0  # `noetl run --timeout`: how long one execution may take before the run gives up
PARALLEL_RUNS = 4  # executions submitted at once by `run_many`

Doc = dict[str, Any]
Event = dict[str, Any]


@dataclass
class Noetl:
    """The command line against the session's stack."""

    home: Path
    scratch: Path
    env: dict[str, str]

    def __call__(self, *args: str, payload: Mapping[str, Any] | None = None,
                 timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "noetl.cli", *args]
        if payload is not None:
            argv += ["--payload", json.dumps(payload)]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=REPO,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    # ------------------------------------------------------------------ playbooks
    def write(self, text: str, stem: str = "playbook") -> Path:
        path = self.scratch / f"{stem}-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def as_file(self, playbook: str | Path) -> Path:
        if isinstance(playbook, Path):
            return playbook
        if "\n" not in playbook and Path(playbook).is_file():
            return Path(playbook)
        return self.write(playbook)

    def run_json(self, playbook: str | Path, payload: Mapping[str, Any] | None = None, *,
                 run_timeout: float = RUN_TIMEOUT_S) -> tuple[int, Doc]:
        """`noetl run --json`: (exit code, the printed document). Fails the test on unparseable output."""
        file = self.as_file(playbook)
        result = self("run", str(file), "--json", "--timeout", str(run_timeout), payload=payload)
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            pytest.fail(f"`noetl run --json {file}` printed no JSON document (exit {result.returncode})\n"
                        f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}")
        assert isinstance(doc, dict), doc
        return result.returncode, doc

    def run_many(self, runs: Sequence[tuple[str | Path, Mapping[str, Any] | None]]
                 ) -> list[tuple[int, Doc]]:
        """Several `run_json` at once (independent executions), results in the order given."""
        with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
            futures = [pool.submit(self.run_json, playbook, payload) for playbook, payload in runs]
            return [f.result() for f in futures]

    def batch(self, cases: Mapping[str, Case]) -> Batch:
        """Start every case now, PARALLEL_RUNS at a time; `batch[key]` waits for that one's outcome."""
        return Batch(self, cases)

    def events(self, execution_id: str) -> list[Event]:
        """`noetl events ID --json`: every event of the execution, in seq order."""
        result = self("events", execution_id, "--json")
        assert result.returncode == 0, result.stderr
        items = json.loads(result.stdout)
        assert [e["seq"] for e in items] == sorted(e["seq"] for e in items)
        return items


@contextmanager
def dev_stack(home: Path, scratch: Path, concurrency: int, *, insights: bool = False) -> Iterator[Noetl]:
    """`noetl dev up` under `home` (its REST API on a free port, `api_url` in home/dev.json) until the
    block ends, then `noetl dev down`. A pools.yaml already in `home` is the stack's pools file.
    Without `insights` the stack runs no indexer and no proposals agent (`--no-indexer --no-agent`):
    loading the embedding model would only slow the tests that do not read them."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOETL_NATS_URL", "NOETL_PG_DSN", "NOETL_SECRET_KEY", "NOETL_BUS_PREFIX",
                        "NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_API_PORT", "NOETL_POOLS")}
    env["NOETL_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    cli = Noetl(home=home, scratch=scratch, env=env)
    # the REST API on a free port, so that parallel runs never collide on 8082
    up = cli("dev", "up", "--concurrency", str(concurrency), "--api-port", "0",
             *(() if insights else ("--no-indexer", "--no-agent")), timeout=180)
    try:
        if up.returncode != 0:
            log = home / "dev.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"`noetl dev up` failed (exit {up.returncode}): {up.stderr[-2000:]}\n{tail}")
        yield cli
    finally:
        cli("dev", "down", timeout=120)


@dataclass(frozen=True)
class Case:
    """One playbook run of a batch; `events=True` also reads its event log after it ends."""

    playbook: str | Path
    payload: Mapping[str, Any] | None = None
    events: bool = False


@dataclass(frozen=True)
class Outcome:
    code: int
    doc: Doc
    log: list[Event]

    @property
    def status(self) -> str:
        return str(self.doc["status"])

    def step(self, name: str) -> dict[str, Any]:
        return step_of(self.doc, name)

    def ran(self, name: str) -> bool:
        return ran(self.doc, name)

    def __str__(self) -> str:
        return json.dumps(self.doc, indent=1, default=str)[:4000]


def completed(run: Outcome) -> None:
    """`noetl run` exited 0 with the execution completed."""
    assert (run.code, run.status) == (0, "completed"), run


def failed(run: Outcome) -> None:
    """`noetl run` exited 1 with the execution failed."""
    assert (run.code, run.status) == (1, "failed"), run


def store_pg_credential(cli: Noetl, prefix: str) -> str:
    """The name of a new postgres credential (`noetl credential set`) for the stack's own database."""
    dsn = json.loads((cli.home / "dev.json").read_text())["pg_dsn"]
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    stored = cli("credential", "set", name, "--type", "postgres", "--data", json.dumps({"dsn": dsn}))
    assert stored.returncode == 0, stored.stderr
    return name


class Batch:
    """Independent executions run concurrently (the stack serves them all at once), so that a module's
    tests do not pay the command line's start-up time one after another. Each test reads its own."""

    def __init__(self, cli: Noetl, cases: Mapping[str, Case]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_RUNS)
        self._futures: dict[str, Future[Outcome]] = {
            key: self._pool.submit(self._one, cli, case) for key, case in cases.items()}

    @staticmethod
    def _one(cli: Noetl, case: Case) -> Outcome:
        code, doc = cli.run_json(case.playbook, case.payload)
        log = cli.events(doc["execution_id"]) if case.events else []
        return Outcome(code, doc, log)

    def __getitem__(self, key: str) -> Outcome:
        return self._futures[key].result(timeout=CLI_TIMEOUT_S * 3)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def unique_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:40].strip("_")
    return f"{base}_{uuid.uuid4().hex[:8]}"


def make_playbook(name: str, body: str) -> str:
    """A playbook document: the header with a unique catalog name/path, then `body` (YAML)."""
    return (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: e2e/{name}}}\n"
            + textwrap.dedent(body).lstrip("\n"))


# ---------------------------------------------------------------------- reading results
def of_type(items: Sequence[Event], type_: str, step: str | None = None) -> list[Event]:
    return [e for e in items if e["type"] == type_ and (step is None or e["step"] == step)]


def step_of(doc: Doc, step: str) -> dict[str, Any]:
    assert step in doc["steps"], f"step '{step}' did not run: {json.dumps(doc, default=str)[:2000]}"
    return doc["steps"][step]


def ran(doc: Doc, step: str) -> bool:
    """Whether a step ran: the spec's "did not run" is a status that is null or absent."""
    entry = doc["steps"].get(step)
    return entry is not None and entry.get("status") not in (None, "skipped")


def expect_lines(path: Path) -> list[str]:
    """The `# expect...:` lines of an example's header, without the comment marker."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith("expect"):
            lines.append(text)
    return lines


def timestamp(event: Event) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))


def peak_in_flight_by_order(items: Sequence[Event], step: str) -> int:
    """Most loop items of `step` scheduled and not yet finished, walking the log in seq order."""
    current = peak = 0
    for event in items:
        if event["step"] != step or event["loop_index"] is None:
            continue
        if event["type"] == "step.scheduled":
            current += 1
            peak = max(peak, current)
        elif event["type"] in ("loop.item.succeeded", "loop.item.failed"):
            current -= 1
    return peak


def peak_in_flight_by_time(items: Sequence[Event], step: str) -> int:
    """Most loop items of `step` running at one instant: [step.started, outcome] intervals by timestamp."""
    started: dict[int, datetime] = {}
    ended: dict[int, datetime] = {}
    for event in items:
        if event["step"] != step or event["loop_index"] is None:
            continue
        if event["type"] == "step.started":
            started.setdefault(event["loop_index"], timestamp(event))
        elif event["type"] in ("loop.item.succeeded", "loop.item.failed"):
            ended[event["loop_index"]] = timestamp(event)
    assert started.keys() == ended.keys(), (started, ended)
    edges = sorted([(t, 1) for t in started.values()] + [(t, -1) for t in ended.values()],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same instant
    current = peak = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    return peak


def warnings_of(items: Sequence[Event], step: str) -> list[str]:
    return [w for e in items if e["step"] == step for w in e["payload"].get("warnings") or []]


def inline(key: str, body: str) -> str:
    """An inline playbook named `<key>_<random>` (a catalog path no other test or session uses)."""
    return make_playbook(f"{key}_{uuid.uuid4().hex[:8]}", body)


def terminal_events(items: Sequence[Event]) -> list[Event]:
    return [e for e in items if e["type"] in ("execution.completed", "execution.failed",
                                               "execution.cancelled")]


def fan_out(branches: Mapping[str, str], *, head: str = "", best_effort: bool = True) -> str:
    """A playbook body: `start` fans out (inclusive) to one step per branch, `{name: "<tool as YAML
    flow>"}`; with best_effort (the default) a failing branch fails only its own step, so one execution
    answers several independent questions. `head` holds root keys such as `workload: {...}`."""
    arcs = ", ".join(f"{{step: {name}}}" for name in branches)
    lines = [*textwrap.dedent(head).strip().splitlines(), "workflow:", "  - step: start",
             "    tool: {kind: noop}", f"    next: {{spec: {{mode: inclusive}}, arcs: [{arcs}]}}"]
    for name, tool in branches.items():
        lines.append(f"  - step: {name}")
        if best_effort:
            lines.append("    spec: {policy: {failure: {mode: best_effort}}}")
        lines.append(f"    tool: {tool}")
    return "\n".join(lines) + "\n"


def branch_error(run: Outcome, step: str) -> dict[str, Any]:
    """The error of a best-effort branch that failed (the execution itself completed)."""
    completed(run)
    entry = run.step(step)
    assert entry["status"] == "failed", entry
    return dict(entry["error"])
