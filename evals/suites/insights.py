"""`noetl eval insights`: seeded histories with known slowdowns, anomalies and failure clusters, written to a
real Postgres event log and read back through the same service as `noetl insights`; scored on what is
found (recall) and on false alarms (precision).

The history (seeded, deterministic): PLAYBOOKS playbooks of a chain of 3 to 5 python steps, RUNS
executions each over the last 7 days; every step has a base duration and a spread (log-normal, 5 to 20 %),
every run a queue time. Planted in it:

- slowdowns: steps whose runs take 2.5x longer from the middle of the history on;
- duration anomalies: single step runs 8x their base duration (their execution is then out of its
  history too, and counts as found either way);
- outcome anomalies: a lone failure of a step that otherwise always succeeds;
- failure clusters: recurring problems whose messages differ in ids and numbers: one there from the
  start, one that comes with playbook version 2 (the playbook is changed midway), one that comes with an
  approved policy change (an overlay of the step applied midway), a second problem of another kind on
  one of the same steps (it must stay apart), and one worded four ways (`the warehouse refused the
  connection`, `could not connect to the warehouse: connection refused`, ...): one problem by meaning,
  which only the embeddings model sees (`--no-embeddings` merges by words and splits it).

Scores: slowdowns (a step flagged `slower`), duration anomalies (by execution and step), outcome anomalies,
clusters (a planted problem is found when exactly one cluster holds all its failures and nothing else),
and `introduced_in` named right for the problems that came with a version or a policy change.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agents.insights.anomalies import MIN_HISTORY
from agents.insights.service import InsightsService
from control_plane.services.insights import InsightsHistory
from control_plane.store import Store, open_store
from control_plane.store.secret_key import SecretKey
from engine.protocol.events import Event
from engine.protocol.results import ResultEnvelope

PLAYBOOKS = 8
RUNS = 30
TARGETS = {"precision": 0.9, "recall": 0.9}


@dataclass
class Truth:
    slower: set[tuple[str, str]] = field(default_factory=set)  # (path, step)
    duration: set[tuple[str, str]] = field(default_factory=set)  # (execution, step)
    outcome: set[tuple[str, str]] = field(default_factory=set)  # (execution, step)
    problems: dict[str, set[str]] = field(default_factory=dict)  # name -> the failures' execution ids
    introduced: dict[str, str | None] = field(default_factory=dict)  # name -> the release it came in


@dataclass
class Planned:
    execution_id: str
    path: str
    version: int
    started: datetime
    steps: list[tuple[str, float, float, str | None, str | None]]  # step, queue ms, run ms, kind, message
    overlays: dict[str, int] = field(default_factory=dict)


def plan_history(seed: int, now: datetime, playbooks: int = PLAYBOOKS, runs: int = RUNS
                 ) -> tuple[list[Planned], Truth]:
    rng = random.Random(seed)
    truth = Truth()
    tag = uuid.uuid4().hex[:6]
    start = now - timedelta(days=7)
    planned: list[Planned] = []
    shapes = []
    for p in range(playbooks):
        path = f"eval/insights_{tag}_{p}"
        steps = [(f"s{k}", rng.uniform(20, 400), rng.uniform(0.05, 0.2)) for k in range(rng.randint(3, 5))]
        shapes.append((path, steps))
    slow = rng.sample([(path, s[0]) for path, steps in shapes for s in steps], 2)
    truth.slower = set(slow)
    cells = [(p, i) for p in range(playbooks) for i in range(10, runs)]
    spikes = set(rng.sample(cells, 5))
    lone = set(rng.sample([c for c in cells if c not in spikes and c[0] >= 3], 2))  # no problems there
    # recurring problems: (playbook, step index, kind, message template, from run, every nth run, how)
    problems = [("from_start", 0, 1, "connection", "connection refused by db-{n} at 10.0.{n}.{m}:5432", 0, 3,
                 None),
                ("new_version", 1, 2, "validation", "column 'order_{n}_total' is missing in table sales_{m}",
                 runs // 2, 2, "version"),
                ("policy_change", 2, 0, "timeout", "timed out after {m} s waiting for job {id}", runs // 2, 2,
                 "policy"),
                ("other_kind", 0, 1, "auth", "token {id} expired for user u{n}", 0, 5, None),
                ("paraphrased", 3, 1, "connection", "{paraphrase}", 0, 4, None)]
    paraphrases = ["could not connect to the warehouse: connection refused",
                   "the warehouse refused the connection", "connection to the warehouse was refused",
                   "warehouse connection refused"]
    for p, (path, steps) in enumerate(shapes):
        for i in range(runs):
            started = start + timedelta(hours=i * 5 + p, minutes=rng.uniform(0, 50))
            execution_id = f"{tag}{p:02d}{i:03d}"
            version = 2 if any(pb == p and how == "version" and i >= first
                               for _, pb, _, _, _, first, _, how in problems) else 1
            overlays = {steps[si][0]: 2 for _, pb, si, _, _, first, _, how in problems
                        if pb == p and how == "policy" and i >= first}
            row = []
            failed = False
            for index, (step, base, spread) in enumerate(steps):
                run = base * rng.lognormvariate(0, spread)
                if (path, step) in truth.slower and i >= runs // 2:
                    run *= 2.5
                if (p, i) in spikes and index == 1:
                    run = base * 8
                    truth.duration.add((execution_id, step))
                kind = message = None
                for name, pb, si, k, template, first, every, how in problems:
                    if pb == p and si == index and i >= first and (i - first) % every == 0 and not failed:
                        kind = k
                        message = template.format(n=rng.randint(1, 999), m=rng.randint(1, 99),
                                                  id=uuid.uuid4().hex[:12],
                                                  paraphrase=paraphrases[(i // every) % len(paraphrases)])
                        truth.problems.setdefault(name, set()).add(execution_id)
                        truth.introduced[name] = (f"v{version}" + (f"+{step}@2" if how == "policy" else "")
                                                  if how else None)
                        break
                if kind is None and (p, i) in lone and index == len(steps) - 1 and not failed:
                    kind, message = "server_error", "503 Service Unavailable from the billing API"
                    truth.outcome.add((execution_id, step))
                    truth.problems.setdefault(f"lone {path}/{step}", set()).add(execution_id)
                    truth.introduced[f"lone {path}/{step}"] = None
                row.append((step, rng.uniform(2, 30), run, kind, message))
                if kind is not None:
                    failed = True
                    break
            planned.append(Planned(execution_id, path, version, started, row, overlays))
    for (execution_id, step) in list(truth.duration):  # judged only with MIN_HISTORY successful runs before
        ran = next(p for p in planned if p.execution_id == execution_id)
        before = [s for p in planned if p.path == ran.path and p.started < ran.started for s in p.steps
                  if s[0] == step and not s[3]]
        succeeded = any(s[0] == step and not s[3] for s in ran.steps)  # a failed run's time is not judged
        if len(before) < MIN_HISTORY or not succeeded:
            truth.duration.discard((execution_id, step))
    # a problem's failures count for the outcome truth only where the step had no failures before
    return planned, truth


def _events(run: Planned) -> list[Event]:
    events: list[Event] = []

    def add(kind: str, at: datetime, **more: Any) -> None:
        events.append(Event(event_id=uuid.uuid4().hex, idempotency_key=uuid.uuid4().hex,
                            execution_id=run.execution_id, type=kind, timestamp=at, **more))  # type: ignore[arg-type]

    add("execution.started", run.started, payload={"path": run.path, "version": run.version})
    if run.overlays:
        add("policy.applied", run.started, payload={"versions": run.overlays})
    at, failure = run.started, None
    for index, (step, queue_ms, run_ms, kind, message) in enumerate(run.steps):
        command = f"{run.execution_id}-{index}"
        add("step.scheduled", at, step=step, command_id=command, pool="default", derived=True)
        at += timedelta(milliseconds=queue_ms)
        add("step.started", at, step=step, command_id=command, pool="default", worker="w1", attempt=1)
        at += timedelta(milliseconds=run_ms)
        envelope = (ResultEnvelope.fail(kind, message or "", duration_ms=run_ms) if kind
                    else ResultEnvelope.ok(index, duration_ms=run_ms))
        add("step.failed" if kind else "step.succeeded", at, step=step, command_id=command, pool="default",
            worker="w1", attempt=1, duration_ms=run_ms, result=envelope)
        if kind:
            failure = kind
            break
    if failure:
        add("execution.failed", at, derived=True, payload={"error": {"kind": failure}})
    else:
        add("execution.completed", at, derived=True)
    return events


async def seed(store: Store, planned: list[Planned]) -> None:
    for run in planned:
        await store.events.create_execution(run.execution_id, playbook_path=run.path,
                                            playbook_version=run.version, playbook_text="", payload={})
        await store.events.record(_events(run))


def _score(found: set[Any], truth: set[Any]) -> dict[str, Any]:
    hit = found & truth
    return {"found": len(found), "planted": len(truth), "hits": len(hit),
            "precision": round(len(hit) / len(found), 3) if found else 1.0,
            "recall": round(len(hit) / len(truth), 3) if truth else 1.0,
            "false_alarms": sorted(map(str, found - truth))[:10],
            "missed": sorted(map(str, truth - found))[:10]}


def score(report: dict[str, Any], truth: Truth, planned: list[Planned]) -> dict[str, Any]:
    """Each finding against what was planted. Duration anomalies on a planted slowdown's step after it
    began are the slowdown seen run by run: neither hits nor false alarms."""
    by_id = {p.execution_id: p for p in planned}
    slowed = {(p.execution_id, step) for p in planned for step, *_ in p.steps
              if (p.path, step) in truth.slower and p.started >= _slowdown_start(planned, p.path)}
    slower = {(s["path"], s["step"]) for s in report["steps"] if s["slower"]}
    duration = set()
    for a in report["anomalies"]:
        if a["kind"] != "duration":
            continue
        if a["scope"] == "step":
            found = (a["execution_id"], a["step"])
        else:  # the execution as a whole: right when it holds a planted spike (or a slowed step)
            held = [s for e, s in truth.duration | slowed if e == a["execution_id"]]
            found = (a["execution_id"], held[0] if held else "(execution)")
        if found not in slowed or found in truth.duration:
            duration.add(found)
    outcome = {(a["execution_id"], a["step"]) for a in report["anomalies"] if a["kind"] == "outcome"}
    outcome_truth = truth.outcome | {(e, s) for e, s in outcome if _first_failure(by_id, e, s)}
    clusters = [(set(c["execution_ids"]), c["introduced_in"]) for c in report["clusters"]]
    planted = {name: ids for name, ids in truth.problems.items()}
    matching = [name for ids, _ in clusters for name, want in planted.items() if ids == want]
    named = [name for ids, introduced in clusters for name, want in planted.items()
             if ids == want and truth.introduced[name] is not None and introduced == truth.introduced[name]]
    with_release = [n for n, v in truth.introduced.items() if v is not None]
    return {"slowdowns": _score(slower, truth.slower),
            "duration_anomalies": _score(duration, truth.duration),
            "outcome_anomalies": _score(outcome, outcome_truth),
            "clusters": {"found": len(clusters), "planted": len(planted), "hits": len(set(matching)),
                         "precision": round(len(matching) / len(clusters), 3) if clusters else 1.0,
                         "recall": round(len(set(matching)) / len(planted), 3) if planted else 1.0,
                         "missed": sorted(set(planted) - set(matching))},
            "introduced_in": {"named": len(named), "planted": len(with_release),
                              "recall": round(len(set(named)) / len(with_release), 3) if with_release
                              else 1.0}}


def _slowdown_start(planned: list[Planned], path: str) -> datetime:
    runs = sorted(p.started for p in planned if p.path == path)
    return runs[len(runs) // 2]


def _first_failure(planned: dict[str, Planned], execution_id: str, step: str) -> bool:
    """Whether a reported outcome anomaly is a problem's first failure on a step that had only succeeded
    (a true outcome anomaly too, though not planted as a lone one)."""
    run = planned.get(execution_id)
    if run is None:
        return False
    earlier = [p for p in planned.values() if p.path == run.path and p.started < run.started]
    return not any(s[0] == step and s[3] for p in earlier for s in p.steps)


@dataclass
class Result:
    scores: dict[str, Any]
    executions: int
    seconds: float

    @property
    def passed(self) -> bool:
        s = self.scores
        parts = [s["slowdowns"], s["duration_anomalies"], s["outcome_anomalies"]]
        return (all(p["precision"] >= TARGETS["precision"] and p["recall"] >= TARGETS["recall"]
                    for p in parts)
                and s["clusters"]["recall"] >= TARGETS["recall"]
                and s["clusters"]["precision"] >= TARGETS["precision"]
                and s["introduced_in"]["recall"] >= TARGETS["recall"])

    def as_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "targets": TARGETS, "executions": self.executions,
                "seconds": round(self.seconds, 2), **self.scores}


async def run_suite(*, seed_value: int = 0, dsn: str | None = None, embeddings: bool = True,
                    say: Callable[[str], None] = lambda _: None) -> Result:
    """Seed a fresh database (NOETL_PG_DSN's server, else an embedded Postgres in a temporary home) and
    score the report of the last 8 days; `embeddings`: failure signatures merged by the embeddings model
    (all-MiniLM-L6-v2, as a server running the indexer does), else by their words."""
    embed = None
    if embeddings:
        from agents.embeddings.embedder import MiniLMEmbedder

        embed = MiniLMEmbedder().load().embed
    loop_start = asyncio.get_running_loop().time()
    home = Path(tempfile.mkdtemp(prefix="noetl-eval-insights-"))
    server = None
    try:
        if dsn is None:
            from engine.runtime.embedded import start_postgres

            server = await asyncio.to_thread(start_postgres, home, database=f"eval_{uuid.uuid4().hex[:8]}")
            dsn = server.dsn
        store = await open_store(dsn, SecretKey.generate())
        try:
            now = datetime.now(UTC)
            planned, truth = plan_history(seed_value, now - timedelta(minutes=1))
            say(f"seeding {len(planned)} executions")
            await seed(store, planned)
            paths = sorted({p.path for p in planned})
            report: dict[str, Any] = {"steps": [], "anomalies": [], "clusters": []}
            service = InsightsService(InsightsHistory(store), clock=lambda: datetime.now(UTC), embed=embed)
            for path in paths:  # per playbook, as a team reads it
                part = await service.report(path, "8d", limit=200, detail=True)
                for key in report:
                    report[key] += part[key]
        finally:
            await store.close()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
        shutil.rmtree(home, ignore_errors=True)
    return Result(score(report, truth, planned), len(planned), asyncio.get_running_loop().time() - loop_start)
