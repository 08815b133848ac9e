"""The one module that imports `openai`: an OpenAI-compatible chat endpoint asked for one JSON object.

Used by the diagnosis' refinement (agents/diagnosis/llm.py) and the chat's planner (agents/chat/planner.py).
Any OpenAI-compatible server works (a local one takes any key); a server without JSON mode is asked again
without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import AsyncOpenAI

NO_KEY = "not-needed"  # local OpenAI-compatible servers take any key; the client insists on one


@dataclass(frozen=True, slots=True)
class LlmSettings:
    """An OpenAI-compatible endpoint: `base_url` None means the OpenAI API itself."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    max_tokens: int = 1200

    def __repr__(self) -> str:  # never the key
        return f"LlmSettings(model={self.model!r}, base_url={self.base_url!r})"


class JsonChat:
    """`await chat.ask(messages)` -> the assistant's reply text (asked for a JSON object)."""

    def __init__(self, settings: LlmSettings, client: AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self._client = client

    def client(self) -> AsyncOpenAI:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(api_key=self.settings.api_key or NO_KEY,
                                       base_url=self.settings.base_url, timeout=self.settings.timeout_s,
                                       max_retries=1)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def ask(self, messages: list[dict[str, str]]) -> str:
        from openai import BadRequestError

        client = self.client()
        request: dict[str, Any] = {"model": self.settings.model, "messages": messages, "temperature": 0,
                                   "max_tokens": self.settings.max_tokens}
        try:
            response = await client.chat.completions.create(**request,
                                                            response_format={"type": "json_object"})
        except BadRequestError:  # a server without JSON mode: ask again without it
            response = await client.chat.completions.create(**request)
        if not response.choices:
            return ""
        return response.choices[0].message.content or ""
