"""Failures grouped into problems: by error signature (the message with its numbers, ids, quoted values
and paths taken out), then signatures of the same kind and step merged when their words are alike (or,
given an embedder, their embeddings); each with its count, first and last seen, the releases it came in
and the release after which it first appeared. Pure (the embedder is passed in)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agents.insights.history import ExecutionRun, StepRun

SIMILAR = 0.6  # word-set (Jaccard) likeness at or above which two signatures are one problem
SIMILAR_EMBEDDED = 0.85  # cosine of their embeddings (all-MiniLM-L6-v2) at or above which they are one
Similarity = Callable[[str, str], float]
Embed = Callable[[Sequence[str]], list[list[float]]]

_NOISE = [
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<v>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "<id>"),
    (re.compile(r"\b(?=[0-9a-z]*\d)(?=[0-9a-z]*[a-z])[0-9a-z]{8,}\b", re.I), "<id>"),  # a job's id: a3f09c2e
    (re.compile(r"(?:/[\w.-]+){2,}"), "<path>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),  # also inside names: order_1234_total
    (re.compile(r"\s+"), " "),
]


def signature(kind: str | None, message: str | None) -> str:
    """`kind: message` with what varies between occurrences of one problem taken out."""
    text = (message or "").strip().splitlines()[0] if message else ""
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]  # a message that is one quoted value (a KeyError's): its words count
    for pattern, replacement in _NOISE:
        text = pattern.sub(replacement, text)
    return f"{kind or 'error'}: {text.strip()[:300]}"


def words_alike(left: str, right: str) -> float:
    a, b = set(re.findall(r"[a-z<>]+", left.lower())), set(re.findall(r"[a-z<>]+", right.lower()))
    return len(a & b) / len(a | b) if a | b else 1.0


def embedding_similarity(embed: Embed, *, keep: int = 4096) -> Similarity:
    """The cosine of two signatures' embeddings (the model that finds similar failures), each signature
    embedded once: failures worded differently that mean the same (`connection refused by db-<n>`,
    `could not connect to the database: refused`) fall into one cluster."""
    vectors: dict[str, list[float]] = {}

    def vector(text: str) -> list[float]:
        found = vectors.get(text)
        if found is None:
            if len(vectors) >= keep:
                vectors.clear()
            found = vectors[text] = embed([text])[0]
        return found

    def similar(left: str, right: str) -> float:
        a, b = vector(left), vector(right)
        norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0

    return similar


@dataclass
class Cluster:
    signature: str
    kind: str
    paths: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)
    signatures: set[str] = field(default_factory=set)
    count: int = 0
    executions: set[str] = field(default_factory=set)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    releases: set[str] = field(default_factory=set)
    introduced_in: str | None = None  # the first release with it, after a release that ran without it
    example: str | None = None

    def as_json(self, *, detail: bool = False) -> dict[str, object]:
        """`detail`: with the ids of the executions it failed in."""
        ids = {"execution_ids": sorted(self.executions)} if detail else {}
        return {**ids, "signature": self.signature, "kind": self.kind, "count": self.count,
                "executions": len(self.executions), "paths": sorted(self.paths), "steps": sorted(self.steps),
                "first_seen": self.first_seen.isoformat() if self.first_seen else None,
                "last_seen": self.last_seen.isoformat() if self.last_seen else None,
                "releases": sorted(self.releases), "introduced_in": self.introduced_in,
                "signatures": sorted(self.signatures), "example": self.example}


def clusters(executions: Sequence[ExecutionRun], *, similarity: Similarity = words_alike,
             threshold: float = SIMILAR) -> list[Cluster]:
    """The failed step runs of `executions` as problems, the most frequent first."""
    found: list[Cluster] = []
    by_signature: dict[tuple[str, str], Cluster] = {}
    for execution in executions:
        for run in execution.runs:
            if run.status != "failed":
                continue
            sig = signature(run.error_kind, run.error_message)
            cluster = by_signature.get((run.step, sig))
            if cluster is None:
                cluster = _nearest(found, run, sig, similarity, threshold)
                if cluster is None:
                    cluster = Cluster(signature=sig, kind=run.error_kind or "error",
                                      example=run.error_message)
                    found.append(cluster)
                by_signature[(run.step, sig)] = cluster
            _add(cluster, execution, run, sig)
    for cluster in found:
        cluster.introduced_in = _introduced(cluster, executions)
    found.sort(key=lambda c: (-c.count, c.signature))
    return found


def _nearest(found: list[Cluster], run: StepRun, sig: str, similarity: Similarity,
             threshold: float) -> Cluster | None:
    best, score = None, threshold
    for cluster in found:
        if cluster.kind != (run.error_kind or "error") or run.step not in cluster.steps:
            continue
        alike = max(similarity(sig, other) for other in cluster.signatures)
        if alike >= score:
            best, score = cluster, alike
    return best


def _add(cluster: Cluster, execution: ExecutionRun, run: StepRun, sig: str) -> None:
    cluster.count += 1
    cluster.signatures.add(sig)
    cluster.paths.add(execution.path)
    cluster.steps.add(run.step)
    cluster.executions.add(execution.execution_id)
    cluster.releases.add(execution.release)
    at = run.ended_at or execution.started_at
    if at is not None:
        cluster.first_seen = at if cluster.first_seen is None else min(cluster.first_seen, at)
        cluster.last_seen = at if cluster.last_seen is None else max(cluster.last_seen, at)


def _introduced(cluster: Cluster, executions: Sequence[ExecutionRun]) -> str | None:
    """The release of the cluster's first occurrence, when an earlier execution of the same path and step
    ran another release without it (else None: it was there from the start of the window)."""
    mine = [e for e in executions if e.execution_id in cluster.executions and e.started_at is not None]
    if not mine:
        return None
    first = min(mine, key=lambda e: e.started_at)  # type: ignore[arg-type, return-value]
    earlier = [e for e in executions
               if e.path == first.path and e.started_at is not None and e.started_at < first.started_at  # type: ignore
               and any(r.step in cluster.steps for r in e.runs) and e.release != first.release]
    return first.release if earlier else None
