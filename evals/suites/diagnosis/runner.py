"""The diagnosis suite: real failing playbooks run on a real stack, each diagnosed and scored.

    python -m evals.suites.diagnosis.runner [--json] [--case NAME ...] [--no-similar]
    noetl eval diagnosis [--json]

It starts a stack with embedded NATS and PostgreSQL in a temporary home, a local HTTP server in a
thread (404/500/429/slow/text/flaky answers by path, see fixtures.py), picks a closed port for refused
connections, stores a postgres credential for the stack's own PostgreSQL, then runs every case of
cases.yaml (`runs` times: the last run is diagnosed; flaky cases fail, pass, fail). Then it diagnoses
each case's last run through the same service `noetl why` uses and reports, per field, the share of
cases whose root-cause step, type and transience match the expectation, the similar-failure recall@5,
and the diagnosis latency (p50/p95).

Recall@5: for each diagnosed execution, the relevant past failures are the other suite executions that
failed with the same expected root-cause type (and the earlier failed runs of the same case); recall is
the share of them (at most 5 count) found among the 5 similar failures the diagnosis lists, averaged
over the cases that have any. It needs the embeddings index (agents/embeddings); without it, or with
`--no-similar`, it is reported as not measured, never as a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.diagnosis.llm import LlmSettings
from agents.diagnosis.model import Diagnosis
from agents.diagnosis.service import DiagnosisService
from control_plane.services.credentials import CredentialService
from control_plane.services.secrets import SecretValues
from control_plane.stack import Stack, StackConfig
from evals.suites.diagnosis.fixtures import FixtureServer, closed_port

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "playbooks"
MANIFEST = HERE / "cases.yaml"
TARGETS = {"root_cause_type": 0.9, "transience": 0.9, "recall_at_5": 0.9}
FIELDS = ("root_cause_step", "root_cause_type", "transience")
PG_CREDENTIAL = "diag_pg"
RUN_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Case:
    file: str
    root_cause_step: str
    root_cause_type: str
    transience: str
    runs: int = 1
    status: str = "failed"

    @property
    def name(self) -> str:
        return self.file.removesuffix(".yaml")

    def expected(self, name: str) -> str:
        return str(getattr(self, name))


def load_cases(only: Sequence[str] | None = None) -> list[Case]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    cases = [Case(**item) for item in data["cases"]]
    if only:
        wanted = set(only)
        unknown = wanted - {c.name for c in cases}
        if unknown:
            raise ValueError(f"no such case(s): {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c.name in wanted]
    return cases


@dataclass
class CaseResult:
    case: Case
    executions: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    diagnosis: Diagnosis | None = None
    latency_ms: float | None = None
    error: str | None = None
    recall: float | None = None  # of the similar failures the diagnosis lists (embedding search + re-rank)
    raw_similar: list[str] = field(default_factory=list)  # the finder's own top 5, before the re-rank
    raw_recall: float | None = None

    def got(self, name: str) -> str | None:
        return None if self.diagnosis is None else getattr(self.diagnosis, name)

    def match(self, name: str) -> bool:
        return self.got(name) == self.case.expected(name)

    def as_json(self) -> dict[str, Any]:
        d = self.diagnosis
        return {"case": self.case.name, "executions": self.executions, "statuses": self.statuses,
                "expected": {f: self.case.expected(f) for f in FIELDS},
                "got": {f: self.got(f) for f in FIELDS},
                "match": {f: self.match(f) for f in FIELDS},
                "confidence": d.confidence if d else None, "latency_ms": self.latency_ms,
                "similar": [s.execution_id for s in d.similar_failures] if d else [],
                "recall_at_5": self.recall, "embedding_only_recall_at_5": self.raw_recall,
                "error": self.error,
                "summary": d.summary if d else None}


@dataclass
class Report:
    results: list[CaseResult]
    wall_s: float
    recall_note: str | None = None  # why recall was not measured
    llm: str | None = None

    def accuracy(self, name: str) -> float:
        return sum(r.match(name) for r in self.results) / max(1, len(self.results))

    @property
    def all_fields(self) -> float:
        return sum(all(r.match(f) for f in FIELDS) for r in self.results) / max(1, len(self.results))

    @property
    def recall_at_5(self) -> float | None:
        return self._mean([r.recall for r in self.results])

    @property
    def raw_recall_at_5(self) -> float | None:
        return self._mean([r.raw_recall for r in self.results])

    def _mean(self, values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        if self.recall_note is not None or not known:
            return None
        return sum(known) / len(known)

    def latency(self, quantile: float) -> float | None:
        values = sorted(r.latency_ms for r in self.results if r.latency_ms is not None)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(quantile * 100) - 1]

    @property
    def targets_met(self) -> bool:
        ok = all(self.accuracy(f) >= TARGETS[f] for f in ("root_cause_type", "transience"))
        recall = self.recall_at_5
        return ok and (recall is None or recall >= TARGETS["recall_at_5"])

    def as_json(self) -> dict[str, Any]:
        recall = self.recall_at_5
        return {
            "suite": "diagnosis", "cases": len(self.results), "llm": self.llm,
            "accuracy": {**{f: round(self.accuracy(f), 4) for f in FIELDS},
                         "all_fields": round(self.all_fields, 4)},
            "recall_at_5": round(recall, 4) if recall is not None else "not measured",
            "embedding_only_recall_at_5": _round4(self.raw_recall_at_5),
            "recall_note": self.recall_note,
            "latency_ms": {"p50": _round(self.latency(0.5)), "p95": _round(self.latency(0.95))},
            "targets": TARGETS, "targets_met": self.targets_met, "wall_s": round(self.wall_s, 1),
            "failures": [r.as_json() for r in self.results if not all(r.match(f) for f in FIELDS) or r.error],
            "results": [r.as_json() for r in self.results],
        }

    def text(self) -> str:
        data = self.as_json()
        lines = [f"diagnosis suite: {len(self.results)} cases in {self.wall_s:.1f} s"
                 + (f" (LLM {self.llm})" if self.llm else " (no LLM)")]
        for name, value in data["accuracy"].items():
            target = TARGETS.get(name)
            lines.append(f"  {name:<16} {value:6.1%}" + (f"  (target {target:.0%})" if target else ""))
        recall = data["recall_at_5"]
        lines.append(f"  {'recall@5':<16} " + (f"{recall:6.1%}  (target 90%)" if isinstance(recall, float)
                                                else f"not measured: {self.recall_note}"))
        if self.raw_recall_at_5 is not None:
            lines.append(f"  {'  embedding only':<16} {self.raw_recall_at_5:6.1%}  (the finder's top 5, "
                         "before the re-rank by diagnosed type)")
        latency = data["latency_ms"]
        lines.append(f"  latency          p50 {latency['p50']} ms, p95 {latency['p95']} ms")
        for r in self.results:
            if not all(r.match(f) for f in FIELDS) or r.error:
                got = ", ".join(f"{f}={r.got(f)}" for f in FIELDS if not r.match(f))
                want = ", ".join(f"{f}={r.case.expected(f)}" for f in FIELDS if not r.match(f))
                lines.append(f"  MISS {r.case.name}: got {got}; expected {want}"
                             + (f"; error {r.error}" if r.error else ""))
        lines.append("targets met" if self.targets_met else "targets NOT met")
        return "\n".join(lines)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _round4(value: float | None) -> float | str:
    return "not measured" if value is None else round(value, 4)


# (an object with `.similar` (the finder) and `async close()`, or None with why not)
SimilarFactory = Callable[[Stack, Path], Awaitable[tuple[Any, str | None]]]


async def embeddings_finder(stack: Stack, home: Path) -> tuple[Any, str | None]:
    """The similar-failure finder over a fresh embeddings index of every suite execution (catching up
    the indexer first), or (None, why not)."""
    try:
        from agents.embeddings.runtime import EmbeddingsRuntime
        from control_plane.services.indexing import IndexingFeed
    except ImportError as exc:
        return None, f"the embeddings part is not installed ({exc.name})"
    assert stack.store is not None
    try:
        embeddings = EmbeddingsRuntime.open(IndexingFeed(stack.store), path=home / "qdrant")
    except Exception as exc:  # the index or the model cannot be used here: say so, do not guess
        log.warning("the embeddings index could not be opened: %s", exc, exc_info=True)
        return None, f"the embeddings index could not be opened ({type(exc).__name__}: {exc})"
    try:
        await embeddings.indexer.catch_up()
    except Exception as exc:
        log.warning("the embeddings index could not be built: %s", exc, exc_info=True)
        await embeddings.close()
        return None, f"the embeddings index could not be built ({type(exc).__name__}: {exc})"
    return embeddings, None


async def run_suite(*, only: Sequence[str] | None = None, llm: LlmSettings | None = None,
                    similar: SimilarFactory | None = embeddings_finder, keep_home: Path | None = None,
                    progress: Callable[[str], None] | None = None) -> Report:
    """Run the cases on a fresh stack and score their diagnoses."""
    cases = load_cases(only)
    started = time.perf_counter()
    home = keep_home or Path(tempfile.mkdtemp(prefix="noetl-diag-eval-"))
    counters = home / "counters"
    counters.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _: None)
    results = [CaseResult(case) for case in cases]
    recall_note: str | None = None
    stack = Stack(StackConfig(home=home, workers={"default": 4}))
    try:
        with FixtureServer() as server:
            async with stack:
                assert stack.executions is not None and stack.store is not None
                await CredentialService(stack.store).set(PG_CREDENTIAL, "postgres", {"dsn": stack.pg_dsn},
                                                         "the diagnosis suite's database")
                payload = {"base_url": server.url, "closed_port": closed_port(), "counter_dir": str(counters),
                           "pg_auth": PG_CREDENTIAL}
                for result in results:
                    await _run_case(stack, result, payload)
                    say(f"ran {result.case.name}: {', '.join(result.statuses)}")
                finder = embeddings = None
                if similar is None:
                    recall_note = "similar-failure search was turned off (--no-similar)"
                else:
                    embeddings, recall_note = await similar(stack, home)
                    finder = embeddings.similar if embeddings is not None else None
                service = DiagnosisService(stack.executions, secrets=SecretValues(stack.store),
                                           similar=finder, llm=llm)
                for result in results:
                    if not result.executions:
                        continue
                    t0 = time.perf_counter()
                    try:
                        result.diagnosis = await service.diagnose(result.executions[-1])
                    except Exception as exc:  # a crash of the diagnosis is a miss, reported
                        log.exception("diagnosing %s failed", result.case.name)
                        result.error = f"{type(exc).__name__}: {exc}"
                    result.latency_ms = round((time.perf_counter() - t0) * 1000, 1)
                    say(f"diagnosed {result.case.name} in {result.latency_ms} ms")
                if finder is not None:
                    for result in results:
                        await _raw_similar(finder, result)
                    _score_recall(results)
                if embeddings is not None:
                    await embeddings.close()
    finally:
        await asyncio.to_thread(stop_embedded, stack)
        if keep_home is None:
            shutil.rmtree(home, ignore_errors=True)
    return Report(results, time.perf_counter() - started, recall_note, llm.model if llm else None)


def stop_embedded(stack: Stack) -> None:
    """The embedded NATS and PostgreSQL this suite started under its temporary home (a Stack leaves them
    running for the next command of the same home; this home goes away)."""
    for server in (stack.nats, stack.postgres):
        if server is not None and server.started:
            try:
                server.stop()
            except Exception as exc:  # reported, not fatal: the figures are already measured
                log.warning("could not stop %s: %s", type(server).__name__, exc)


async def _run_case(stack: Stack, result: CaseResult, payload: dict[str, Any]) -> None:
    assert stack.executions is not None
    case = result.case
    try:
        text = (PLAYBOOKS / case.file).read_text(encoding="utf-8")
        registered = await stack.executions.register(text, case.file)
        for _ in range(case.runs):
            execution_id = await stack.executions.start(registered.path, version=registered.version,
                                                        payload=payload)
            summary = await stack.executions.wait(execution_id, timeout_s=RUN_TIMEOUT_S)
            result.executions.append(execution_id)
            result.statuses.append(str(summary.get("status")))
    except Exception as exc:  # a case that cannot run is a miss, reported
        log.exception("running %s failed", case.name)
        result.error = f"{type(exc).__name__}: {exc}"
    if result.statuses and result.statuses[-1] != case.status and result.error is None:
        result.error = f"the last run ended {result.statuses[-1]}, expected {case.status}"


async def _raw_similar(finder: Any, result: CaseResult, k: int = 5) -> None:
    """The finder's own top k for the diagnosed run (what the list would be without the re-rank)."""
    d = result.diagnosis
    if d is None:
        return
    try:
        found = await finder.for_execution(d.execution_id, step=d.root_cause_step or d.failed_step, limit=k)
    except Exception as exc:  # counted as nothing found
        log.warning("the finder failed for %s: %s", d.execution_id, exc)
        return
    result.raw_similar = [str(getattr(item, "execution_id", "")) for item in found]


def _score_recall(results: list[CaseResult], k: int = 5) -> None:
    failed: dict[str, str] = {}  # execution id -> expected type of its case
    for r in results:
        for execution_id, status in zip(r.executions, r.statuses, strict=False):
            if status == "failed":
                failed[execution_id] = r.case.root_cause_type
    for r in results:
        if r.diagnosis is None or not r.executions:
            continue
        own = r.executions[-1]
        relevant = {e for e, kind in failed.items() if kind == r.case.root_cause_type and e != own}
        if not relevant:
            continue
        found = {s.execution_id for s in r.diagnosis.similar_failures[:k]}
        r.recall = len(found & relevant) / min(k, len(relevant))
        r.raw_recall = len(set(r.raw_similar[:k]) & relevant) / min(k, len(relevant))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--case", action="append", help="run only this case (repeatable)")
    parser.add_argument("--no-similar", action="store_true", help="skip the similar-failure search")
    args = parser.parse_args(argv)
    report = asyncio.run(run_suite(only=args.case, similar=None if args.no_similar else embeddings_finder,
                                   progress=lambda line: print(line, file=sys.stderr)))
    print(json.dumps(report.as_json(), indent=2) if args.json else report.text())
    return 0 if report.targets_met else 1


if __name__ == "__main__":
    sys.exit(main())
