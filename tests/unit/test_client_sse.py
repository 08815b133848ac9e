"""The client's Server-Sent Events reader: what the API's stream sends becomes the events, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from control_plane.client import _sse_events


def parse(text: str) -> list[dict[str, Any]]:
    async def lines() -> AsyncIterator[str]:
        for line in text.split("\n"):
            yield line

    async def collect() -> list[dict[str, Any]]:
        return [event async for event in _sse_events(lines())]

    return asyncio.run(collect())


def test_each_event_block_becomes_its_data_json_and_keepalive_comments_are_skipped() -> None:
    text = (": keep-alive\n\n"
            "event: step.started\nid: 3\ndata: {\"seq\": 3, \"type\": \"step.started\"}\n\n"
            ": keep-alive\n\n"
            "event: execution.completed\r\nid: 4\r\n"
            "data: {\"seq\": 4,\r\ndata:  \"type\": \"execution.completed\"}\r\n\r\n")
    assert parse(text) == [{"seq": 3, "type": "step.started"}, {"seq": 4, "type": "execution.completed"}]


def test_the_event_name_and_id_fill_in_a_data_document_without_type_or_seq() -> None:
    assert parse("event: execution.failed\nid: 9\ndata: {}\n\n") == [{"type": "execution.failed", "seq": 9}]


def test_an_unterminated_last_block_is_not_an_event() -> None:
    assert parse("id: 1\ndata: {\"seq\": 1}") == []  # the connection ended mid-block
