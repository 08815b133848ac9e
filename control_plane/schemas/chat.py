"""The chat over the event log as the API speaks it: a question in, an answer with its evidence out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from control_plane.schemas.base import RequestModel


class ChatRequest(RequestModel):
    message: str = Field(min_length=1, max_length=4000,
                         examples=["why did the last run of examples/flaky fail?"])
    conversation_id: str | None = Field(default=None, min_length=1, max_length=200,
                                        description="continue this conversation (one of yours); leave it "
                                                    "out to begin a new one")


class ChatAnswer(BaseModel):
    """Fields that do not apply are null or empty. `references` are the ids of the events the answer
    cites (each also appears in `answer` as [event <id>])."""

    conversation_id: str
    answer: str
    execution_id: str | None = None
    playbook_path: str | None = None
    diagnosis: dict[str, Any] | None = Field(default=None, description="the diagnosis the answer is "
                                             "built on (GET /api/executions/{id}/diagnosis's document)")
    similar: list[dict[str, Any]] = Field(default_factory=list)
    proposals: list[dict[str, Any]] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)
    intent: str | None = Field(default=None, description="what the question was read as: why, fix, "
                               "transient, similar, propose, proposals, status, list (null: by the run's "
                               "state)")
    answered_by: str = Field(default="rules", description="rules, or rules+llm when an LLM wrote the answer "
                             "from tool calls")
    tools: list[str] = Field(default_factory=list, description="the tools the LLM called, in order")


class ChatTurn(BaseModel):
    seq: int
    question: str
    answer: ChatAnswer
    asked_at: datetime


class ChatHistory(BaseModel):
    conversation_id: str
    turns: list[ChatTurn]
