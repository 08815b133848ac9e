"""/ui/chat: the chat over the event log in the console, as the signed-in token (the same chat as
POST /api/chat: `app.state.chat`); the question box on every page posts here."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from starlette.responses import RedirectResponse

from control_plane.api.chat import Chat
from control_plane.api.policies import actor_of
from control_plane.console.render import page
from control_plane.console.session import ConsoleRoute, checked_form, viewer_of
from control_plane.errors import ControlPlaneError, InvalidArgumentError, NotFoundError
from control_plane.services.sessions import CONSOLE_ROOT

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

MAX_MESSAGE = 4000


def chat_of(request: Request) -> Chat:
    chat: Chat | None = getattr(request.app.state, "chat", None)
    if chat is None:
        raise ControlPlaneError("the chat is not enabled in this server", where="app.state.chat",
                                fix="start the server with the `noetl` command (it enables the chat)")
    return chat


@router.get(f"{CONSOLE_ROOT}/chat")
async def chat_page(request: Request,
                    conversation: Annotated[str | None, Query(min_length=1, max_length=200)] = None
                    ) -> Response:
    viewer = await viewer_of(request)
    turns: list[dict[str, Any]] = []
    if conversation:
        for turn in await chat_of(request).history(conversation, actor=actor_of(viewer.token)):
            turns.append({"question": turn.question, "asked_at": turn.asked_at, "answer": turn.answer})
    return page("chat.html", {"viewer": viewer, "active": "chat", "turns": turns,
                              "conversation": conversation})


@router.post(f"{CONSOLE_ROOT}/chat")
async def ask(request: Request) -> Response:
    viewer = await viewer_of(request)
    fields = await checked_form(request, viewer)
    message = fields.get("message", "").strip()
    if not message or len(message) > MAX_MESSAGE:
        raise InvalidArgumentError(f"a question of 1 to {MAX_MESSAGE} characters, got {len(message)}",
                                   where="message", fix='ask a question, e.g. "why did the last run fail?"')
    conversation = fields.get("conversation") or None
    about = fields.get("about") or None
    try:
        reply = await chat_of(request).ask(message, conversation, actor=actor_of(viewer.token),
                                           role=viewer.token.role, about=about)
    except NotFoundError:
        if conversation is None:
            raise
        reply = await chat_of(request).ask(message, None, actor=actor_of(viewer.token),  # a stale id: anew
                                           role=viewer.token.role, about=about)
    query = urlencode({"conversation": reply.conversation_id})
    return RedirectResponse(f"{CONSOLE_ROOT}/chat?{query}#latest", status_code=303)
