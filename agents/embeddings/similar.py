"""Find similar failures: past failures ranked by how much they resemble one execution's, or a text.

The interface the diagnosis calls (keep it stable):

    similar = SimilarFailures(index, embedder, feed)
    await similar.for_execution(execution_id, step=None, limit=5) -> list[SimilarFailure]
    await similar.search(text, limit=5, filters=None) -> list[SimilarFailure]

`for_execution` takes the execution's own failure documents (those of `step` when given and it failed,
else all of them; built from its events, so an execution not indexed yet works too; their vectors are
read from the index when stored, else embedded) and returns the nearest failures of OTHER executions.
Results are distinct by (execution_id, step) (the best-scoring document of each), best first.

Each `SimilarFailure` (`to_dict()` gives the JSON the CLI and the API print):
    execution_id, step, playbook_path, error_kind, error_message, score (cosine similarity, 0..1),
    occurred_at (ISO 8601), tool_kind, event_type (step.failed, loop.item.failed, task.attempt.failed),
    next: {
        retried_and_succeeded: bool  # that failure was retried in its execution and the step then succeeded
        later_run_succeeded: bool | None  # the next ended run of the same playbook: completed (True) or
                                          # not (False); None: no later run yet
        later_execution_id: str | None
        later_run_status: str | None  # completed | failed | cancelled
        later_step_succeeded: bool | None  # the same step in that run; None: it did not run there
    }
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from agents.embeddings.documents import Document, ExecutionSource, failure_documents
from agents.embeddings.embedder import Embedder
from agents.embeddings.index import Filters, Hit, VectorIndex

QUERY_DOCUMENTS = 5  # at most this many of the execution's own failures are searched with
OVERFETCH = 4  # hits asked per result wanted, to have enough after keeping one per (execution, step)


class LaterRunInfo(Protocol):
    later_execution_id: str | None
    later_status: str | None
    later_step_outcome: str | None


class SimilarFeed(Protocol):
    """What the search reads (control_plane.services.indexing.IndexingFeed)."""

    async def execution(self, execution_id: str) -> ExecutionSource: ...

    async def later_runs(self, asked: Sequence[tuple[str, str | None]]
                         ) -> Mapping[tuple[str, str | None], LaterRunInfo]: ...


@dataclass(frozen=True, slots=True)
class Next:
    retried_and_succeeded: bool = False
    later_run_succeeded: bool | None = None
    later_execution_id: str | None = None
    later_run_status: str | None = None
    later_step_succeeded: bool | None = None


@dataclass(frozen=True, slots=True)
class SimilarFailure:
    execution_id: str
    step: str | None
    playbook_path: str | None
    error_kind: str | None
    error_message: str | None
    score: float
    occurred_at: str | None
    tool_kind: str | None = None
    event_type: str | None = None
    next: Next = field(default_factory=Next)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SimilarFailures:
    def __init__(self, index: VectorIndex, embedder: Embedder, feed: SimilarFeed) -> None:
        self.index = index
        self.embedder = embedder
        self.feed = feed

    async def for_execution(self, execution_id: str, step: str | None = None,
                            limit: int = 5) -> list[SimilarFailure]:
        """Past failures of other executions like this execution's (NotFoundError for an unknown id)."""
        execution = await self.feed.execution(execution_id)
        own = failure_documents(execution)
        if step is not None and any(d.payload.get("step") == step for d in own):
            own = [d for d in own if d.payload.get("step") == step]
        final = [d for d in own if d.payload.get("event_type") != "task.attempt.failed"]
        queries = (final or own)[:QUERY_DOCUMENTS]
        if not queries:
            return []
        vectors = await self._vectors(queries)
        exclude = {"execution_id": execution_id}
        hits: list[Hit] = []
        for vector in vectors:
            hits.extend(await asyncio.to_thread(self.index.search, vector, "failure", limit * OVERFETCH,
                                                None, exclude))
        # the same kind of error first, nearest first within it: a timeout is more like another timeout
        # than like a refused connection whose message happens to read alike
        kinds = {d.payload.get("error_kind") for d in queries} - {None}
        return await self._results(hits, limit, prefer_kinds=kinds)

    async def search(self, text: str, limit: int = 5, filters: Filters | None = None) -> list[SimilarFailure]:
        """Past failures like a description (an error message, "timeout calling the payments API", ...)."""
        if not text.strip():
            return []
        [vector] = await asyncio.to_thread(self.embedder.embed, [text])
        hits = await asyncio.to_thread(self.index.search, vector, "failure", limit * OVERFETCH, filters, None)
        return await self._results(hits, limit)

    async def _vectors(self, documents: Sequence[Document]) -> list[list[float]]:
        """The stored vectors of the documents; those not indexed yet are embedded now."""
        stored = await asyncio.to_thread(self.index.retrieve, "failure", [d.id for d in documents],
                                         with_vectors=True)
        vectors = {key: vector for key, (vector, _) in stored.items() if vector is not None}
        missing = [d for d in documents if d.id not in vectors]
        if missing:
            embedded = await asyncio.to_thread(self.embedder.embed, [d.text for d in missing])
            vectors.update(zip([d.id for d in missing], embedded, strict=True))
        return [vectors[d.id] for d in documents]

    async def _results(self, hits: Sequence[Hit], limit: int,
                       prefer_kinds: set[str] | frozenset[str] = frozenset()) -> list[SimilarFailure]:
        best: dict[tuple[str, str | None], Hit] = {}
        ranked = sorted(hits, key=lambda h: (h.payload.get("error_kind") in prefer_kinds, h.score),
                        reverse=True)
        for hit in ranked:
            key = (str(hit.payload.get("execution_id")), hit.payload.get("step"))
            best.setdefault(key, hit)
        chosen = list(best.items())[:limit]
        later = await self.feed.later_runs([key for key, _ in chosen]) if chosen else {}
        results = []
        for key, hit in chosen:
            p = hit.payload
            run = later.get(key)
            outcome = run.later_step_outcome if run is not None else None
            status = run.later_status if run is not None else None
            results.append(SimilarFailure(
                execution_id=key[0], step=key[1], playbook_path=p.get("playbook_path"),
                error_kind=p.get("error_kind"), error_message=p.get("error_message"),
                score=round(max(0.0, min(1.0, hit.score)), 4), occurred_at=p.get("occurred_at"),
                tool_kind=p.get("tool_kind"), event_type=p.get("event_type"),
                next=Next(retried_and_succeeded=bool(p.get("retried")) and bool(p.get("step_succeeded")),
                          later_run_succeeded=None if status is None else status == "completed",
                          later_execution_id=run.later_execution_id if run is not None else None,
                          later_run_status=status,
                          later_step_succeeded=None if outcome is None else outcome == "succeeded")))
        return results
