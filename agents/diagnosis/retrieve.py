"""Similar past failures for a diagnosis: embedding search, then a re-rank by diagnosed root cause.

The finder (agents.embeddings.similar.SimilarFailures) ranks past failures by how much their text
resembles this execution's. Text alone mixes failures that merely read alike (the same step names, the
same URL) with those that failed for the same reason; so `similar_failures` asks it for a wider pool
(`POOL` candidates), diagnoses each candidate execution with the same rules (its events only, no
history), and puts the candidates whose root-cause type matches this diagnosis first, keeping the
finder's order within each group. Each result carries the candidate's diagnosed root-cause type.
When the finder is missing or fails, the diagnosis says so in `evidence_gaps` and goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from agents.diagnosis.evidence import gather
from agents.diagnosis.model import Diagnosis, SimilarFailure
from agents.diagnosis.rules import classify

if TYPE_CHECKING:
    from control_plane.services.executions import ExecutionService

log = logging.getLogger(__name__)

LIMIT = 5
POOL = 20  # candidates asked of the finder, re-ranked, cut to LIMIT
CANDIDATE_TIMEOUT_S = 5.0


class SimilarFinder(Protocol):
    """Past failures like one execution's (agents.embeddings.similar.SimilarFailures); sync or async.

    Each result has execution_id, step, playbook_path, error_kind, error_message, score, occurred_at and
    next: {retried_and_succeeded, later_run_succeeded, later_execution_id, ...}."""

    def for_execution(self, execution_id: str, step: str | None = None, limit: int = 5) -> Any: ...


async def similar_failures(diagnosis: Diagnosis, similar: SimilarFinder | None,
                           executions: ExecutionService | None = None, *, limit: int = LIMIT,
                           pool: int = POOL) -> Diagnosis:
    """The diagnosis with its similar past failures, or with a gap saying why there are none."""
    if similar is None:
        return _gap(diagnosis, "similar-failure search is not available (no embeddings index): "
                               "similar_failures is empty")
    step = diagnosis.root_cause_step or diagnosis.failed_step
    try:
        found = similar.for_execution(diagnosis.execution_id, step=step,
                                      limit=pool if executions is not None else limit)
        if inspect.isawaitable(found):
            found = await found
        items = [SimilarFailure.of(item) for item in (found or [])]
        items = [s for s in items if s.execution_id != diagnosis.execution_id]
    except Exception as exc:  # retrieval is evidence, not a precondition
        log.warning("diagnosis: the similar-failure search failed (%s: %s)", type(exc).__name__, exc)
        return _gap(diagnosis, f"the similar-failure search failed ({type(exc).__name__}): "
                               "similar_failures is empty")
    if executions is not None and diagnosis.root_cause_type is not None and items:
        items = await rerank(diagnosis, items, executions)
    return diagnosis.model_copy(update={"similar_failures": items[:limit]})


async def rerank(diagnosis: Diagnosis, items: Sequence[SimilarFailure],
                 executions: ExecutionService) -> list[SimilarFailure]:
    """Candidates with the same diagnosed root-cause type first (stable within each group)."""
    ids = list(dict.fromkeys(s.execution_id for s in items))
    types = await asyncio.gather(*(_root_type(e, executions) for e in ids))
    by_execution = dict(zip(ids, types, strict=True))
    typed = [s.model_copy(update={"root_cause_type": by_execution.get(s.execution_id)}) for s in items]
    return sorted(typed, key=lambda s: s.root_cause_type != diagnosis.root_cause_type)


async def _root_type(execution_id: str, executions: ExecutionService) -> str | None:
    try:
        facts = await asyncio.wait_for(gather(execution_id, executions, history_runs=0), CANDIDATE_TIMEOUT_S)
        return classify(facts).root_cause_type
    except Exception as exc:  # an unreadable candidate keeps its place, untyped
        log.debug("diagnosis: candidate %s could not be classified (%s)", execution_id, exc)
        return None


def _gap(diagnosis: Diagnosis, gap: str) -> Diagnosis:
    return diagnosis.model_copy(update={"evidence_gaps": [*diagnosis.evidence_gaps, gap]})
