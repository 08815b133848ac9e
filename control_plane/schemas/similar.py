"""Similar past failures as the API returns them (agents.embeddings.similar.SimilarFailure.to_dict())."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SimilarNext(BaseModel):
    """What happened after that failure."""

    model_config = ConfigDict(frozen=True)

    # defaults given by keyword: type checkers read a positional one as no default (dataclass_transform)
    retried_and_succeeded: bool = Field(default=False,
                                        description="retried in its execution, then it succeeded")
    later_run_succeeded: bool | None = Field(default=None,
                                             description="the next ended run of the same playbook "
                                                         "completed; null: no later run yet")
    later_execution_id: str | None = None
    later_run_status: str | None = None
    later_step_succeeded: bool | None = Field(default=None,
                                              description="the same step in that later run; null: "
                                                          "it did not run there")


class SimilarFailureItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    execution_id: str
    step: str | None = None
    playbook_path: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    score: float = Field(description="cosine similarity to the query, 0..1")
    occurred_at: str | None = None
    tool_kind: str | None = None
    event_type: str | None = None
    next: SimilarNext = Field(default_factory=SimilarNext)


class SimilarPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[SimilarFailureItem]
