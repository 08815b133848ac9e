"""/api/chat: ask about executions in plain words; the answer cites the events it is built on.

The chat itself is the agents' (agents.chat.service.ChatService): the control plane sits below the agents,
so the process that serves the API puts a `Chat` in `app.state.chat` (the `noetl` entry point does).
Without one: 503. Any token may ask (viewer); what the chat does on the caller's behalf (proposing a
change) needs the caller's own role, and the chat never approves anything. A conversation belongs to the
token that began it: another token's id is 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Request

from control_plane.api.auth import require
from control_plane.api.policies import actor_of
from control_plane.api.problems import problem, responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.chat import ChatAnswer, ChatHistory, ChatRequest
from control_plane.services.auth import TokenInfo
from policies.model import Actor

router = APIRouter(tags=["chat"], route_class=AuthorizedRoute)

ConversationId = Annotated[str, Path(min_length=1, max_length=200, description="the conversation's id")]


class Chat(Protocol):
    """What the routes call (agents.chat.service.ChatService satisfies it)."""

    async def ask(self, message: str, conversation_id: str | None, *, actor: Actor, role: str,
                  about: str | None = None) -> Any: ...

    async def history(self, conversation_id: str, *, actor: Actor) -> list[Any]: ...


def _chat(request: Request) -> Chat | None:
    return getattr(request.app.state, "chat", None)


def _unavailable() -> Any:
    return problem(503, code="chat_unavailable", detail="the chat is not enabled in this server",
                   where="app.state.chat",
                   fix="start the server with the `noetl` command (it enables the chat)")


@router.post("/api/chat", response_model=ChatAnswer,
             summary="Ask about executions: why one failed, is it transient, similar failures, what to do",
             responses=responses(400, 401, 403, 404, 413, 415, 422, 503))
async def ask(request: Request, token: Annotated[TokenInfo, require("viewer")], body: ChatRequest) -> Any:
    chat = _chat(request)
    if chat is None:
        return _unavailable()
    reply = await chat.ask(body.message, body.conversation_id, actor=actor_of(token), role=token.role)
    return reply.as_json() if hasattr(reply, "as_json") else dict(reply)


@router.get("/api/chat/{conversation_id}", response_model=ChatHistory,
            summary="One of your conversations: every question with its answer, oldest first",
            responses=responses(401, 403, 404, 422, 503))
async def history(request: Request, token: Annotated[TokenInfo, require("viewer")],
                  conversation_id: ConversationId) -> Any:
    chat = _chat(request)
    if chat is None:
        return _unavailable()
    turns = await chat.history(conversation_id, actor=actor_of(token))
    return {"conversation_id": conversation_id,
            "turns": [{"seq": t.seq, "question": t.question, "answer": t.answer, "asked_at": t.asked_at}
                      for t in turns]}
