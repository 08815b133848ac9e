"""What a diagnosis says (validated at the edge, like every model that leaves the process).

`Diagnosis` is what `noetl why --json`, `GET /api/executions/{id}/diagnosis` and the eval print, and what
an LLM's refinement is validated against. Its vocabulary is the spec's (section 9): `root_cause_type` is
an `error.kind`; a downstream step failing on bad data from an upstream step is diagnosed as the
UPSTREAM step with type `validation` (its output did not have the shape its readers need).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from engine.protocol.results import ErrorKind

Transience = Literal["transient", "intermittent", "permanent"]
FixKind = Literal["retry_rule", "timeout", "credential", "query", "pool", "code", "input", "upstream_data",
                  "concurrency"]
TRANSIENCE: tuple[str, ...] = get_args(Transience)
FIX_KINDS: tuple[str, ...] = get_args(FixKind)


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Evidence(Model):
    """One fact and the event it was read from (an event of this execution, or of an earlier run)."""

    event_id: str
    fact: str = Field(min_length=1, max_length=2000)


class SuggestedFix(Model):
    """A concrete change. `change` is a patch in the playbook language's own keys, e.g.
    {"step": "fetch", "set": {"retry": {"max_attempts": 5, "retry_on_status": [429]}}}, or a command to
    run, e.g. {"command": "noetl credential set pg_main --type postgres --data '{...}'"}."""

    kind: FixKind
    description: str = Field(min_length=1, max_length=2000)
    change: dict[str, Any] = Field(default_factory=dict)


class SimilarNext(Model):
    """What happened after a similar failure."""

    retried_and_succeeded: bool = False  # retried in its execution, and the step then succeeded
    later_run_succeeded: bool | None = None  # the next ended run of the playbook completed; None: none yet
    later_execution_id: str | None = None
    later_run_status: str | None = None  # completed | failed | cancelled
    later_step_succeeded: bool | None = None  # the same step in that run; None: it did not run there


class SimilarFailure(Model):
    """A past failure that resembles this one (from the embeddings index)."""

    execution_id: str
    step: str | None = None
    playbook_path: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    score: float = 0.0
    occurred_at: datetime | None = None
    tool_kind: str | None = None
    event_type: str | None = None  # step.failed, loop.item.failed, task.attempt.failed
    root_cause_type: str | None = None  # that failure's own diagnosed root-cause type (when re-ranked)
    next: SimilarNext = Field(default_factory=SimilarNext)

    @classmethod
    def of(cls, item: Any) -> SimilarFailure:
        """From a similar-failures result: a mapping, a pydantic model or a dataclass alike."""
        if isinstance(item, SimilarFailure):
            return item
        if hasattr(item, "model_dump"):
            item = item.model_dump()
        elif not isinstance(item, dict):
            item = {name: getattr(item, name) for name in cls.model_fields if hasattr(item, name)}
        data = {k: v for k, v in dict(item).items() if k in cls.model_fields}
        nxt = data.get("next")
        if nxt is not None and not isinstance(nxt, dict):
            nxt = nxt.model_dump() if hasattr(nxt, "model_dump") else {
                name: getattr(nxt, name) for name in SimilarNext.model_fields if hasattr(nxt, name)}
        if isinstance(nxt, dict):
            data["next"] = {k: v for k, v in nxt.items() if k in SimilarNext.model_fields}
        return cls.model_validate(data)


class Diagnosis(Model):
    """Why an execution failed (or was slow), with the evidence and what to change."""

    execution_id: str
    playbook_path: str | None = None
    status: str  # the execution's status: failed, completed (slow or recovered), cancelled, running
    failed_step: str | None = None  # the step whose failure failed the execution
    root_cause_step: str | None = None  # may be upstream of failed_step
    root_cause_type: ErrorKind | None = None  # None: nothing failed (a slow execution)
    transience: Transience | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    summary: str = Field(min_length=1)
    error_message: str | None = None  # the failed step's error message (secrets redacted)
    evidence: list[Evidence] = Field(default_factory=list)
    similar_failures: list[SimilarFailure] = Field(default_factory=list)
    suggested_fixes: list[SuggestedFix] = Field(default_factory=list)
    evidence_gaps: list[str] = Field(default_factory=list)
    explained_by: Literal["rules", "rules+llm"] = "rules"


class Refinement(Model):
    """What an LLM may change in a rule-based diagnosis: the explanation and the fixes, nothing else."""

    summary: str = Field(min_length=1, max_length=4000)
    suggested_fixes: list[SuggestedFix] = Field(default_factory=list, max_length=10)
