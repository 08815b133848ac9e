"""The chat's conversations at rest: who began each, what it points at (`focus`), questions and answers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from control_plane.errors import NotFoundError
from control_plane.store.db import Database


@dataclass(frozen=True, slots=True)
class ChatTurn:
    seq: int
    question: str
    answer: dict[str, Any]
    asked_by: str
    asked_at: datetime


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str
    owner: str
    created_at: datetime
    updated_at: datetime
    focus: dict[str, Any] = field(default_factory=dict)


class ChatStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin(self, owner: str) -> Conversation:
        """A new, empty conversation of `owner`."""
        row = await self._db.fetch_one(
            "INSERT INTO chat_conversations (conversation_id, owner) VALUES (%s, %s) "
            "RETURNING conversation_id, owner, created_at, updated_at, focus",
            (uuid.uuid4().hex, owner))
        assert row is not None
        return Conversation(**row)

    async def get(self, conversation_id: str) -> Conversation:
        row = await self._db.fetch_one(
            "SELECT conversation_id, owner, created_at, updated_at, focus FROM chat_conversations "
            "WHERE conversation_id = %s", (conversation_id,))
        if row is None:
            raise NotFoundError(f"no conversation '{conversation_id}'", where="conversation_id",
                                fix="leave conversation_id out to begin a new conversation")
        return Conversation(**row)

    async def record(self, conversation_id: str, question: str, answer: dict[str, Any], asked_by: str,
                     focus: dict[str, Any]) -> int:
        """Store one question with its answer and the conversation's new focus, atomically; its seq."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE chat_conversations SET focus = %s::jsonb, updated_at = clock_timestamp() "
                "WHERE conversation_id = %s RETURNING conversation_id", (json.dumps(focus), conversation_id))
            if await cur.fetchone() is None:
                raise NotFoundError(f"no conversation '{conversation_id}'", where="conversation_id",
                                    fix="leave conversation_id out to begin a new conversation")
            cur = await conn.execute(
                "INSERT INTO chat_messages (conversation_id, seq, question, answer, asked_by) "
                "SELECT %s, coalesce(max(seq), 0) + 1, %s, %s::jsonb, %s FROM chat_messages "
                "WHERE conversation_id = %s RETURNING seq",
                (conversation_id, question, json.dumps(answer, default=str), asked_by, conversation_id))
            row = await cur.fetchone()
            assert row is not None
            return int(row["seq"])

    async def turns(self, conversation_id: str, *, limit: int = 200) -> list[ChatTurn]:
        """The conversation's questions and answers, oldest first (the last `limit`)."""
        rows = await self._db.fetch_all(
            "SELECT seq, question, answer, asked_by, asked_at FROM ("
            "  SELECT * FROM chat_messages WHERE conversation_id = %s ORDER BY seq DESC LIMIT %s) t "
            "ORDER BY seq", (conversation_id, limit))
        return [ChatTurn(**row) for row in rows]
