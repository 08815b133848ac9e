"""The chat's conversations for the layers above (agents/chat): begun, continued and read by their owner."""

from __future__ import annotations

from typing import Any

from control_plane.errors import NotFoundError
from control_plane.store import Store
from control_plane.store.chat import ChatTurn, Conversation


class ConversationService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def open(self, conversation_id: str | None, owner: str) -> Conversation:
        """The owner's conversation `conversation_id`, or a new one when it is None. Another identity's
        conversation is NotFoundError, as an unknown one: its existence is not told either."""
        if conversation_id is None:
            return await self.store.chat.begin(owner)
        conversation = await self.store.chat.get(conversation_id)
        if conversation.owner != owner:
            raise NotFoundError(f"no conversation '{conversation_id}' of yours", where="conversation_id",
                                fix="leave conversation_id out to begin a new conversation")
        return conversation

    async def record(self, conversation: Conversation, question: str, answer: dict[str, Any],
                     focus: dict[str, Any]) -> int:
        return await self.store.chat.record(conversation.conversation_id, question, answer,
                                            conversation.owner, focus)

    async def turns(self, conversation_id: str, owner: str) -> list[ChatTurn]:
        await self.open(conversation_id, owner)
        return await self.store.chat.turns(conversation_id)
