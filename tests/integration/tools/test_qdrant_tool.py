"""The qdrant tool creates, fills, searches and prunes collections with qdrant-client's local mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.results import ResultEnvelope
from engine.tools.qdrant_tool import QdrantTool

from .conftest import StoredCredentials, free_port, make_call

pytestmark = pytest.mark.anyio

POINTS = [
    {"id": 1, "vector": [1.0, 0.0, 0.0], "payload": {"team": "red", "name": "one"}},
    {"id": 2, "vector": [0.9, 0.1, 0.0], "payload": {"team": "blue", "name": "two"}},
    {"id": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "vector": [0.0, 0.0, 1.0], "payload": {"team": "red"}},
]


@pytest.fixture
async def qdrant() -> AsyncIterator[QdrantTool]:
    tool = QdrantTool()
    yield tool
    await tool.close()


async def op(tool: QdrantTool, operation: str, url: str = ":memory:", **config: Any) -> ResultEnvelope:
    return await tool.run(make_call("qdrant", {"operation": operation, "collection": "docs", "url": url,
                                               **config}))


async def filled(tool: QdrantTool, url: str = ":memory:") -> None:
    created = await op(tool, "create_collection", url, vector_size=3, distance="Cosine")
    assert created.data == {"collection": "docs", "created": True}
    upserted = await op(tool, "upsert", url, points=POINTS)
    assert upserted.status == "ok" and upserted.data["count"] == 3 and upserted.data["status"] == "completed"


async def test_search_returns_scored_points_nearest_first(qdrant: QdrantTool) -> None:
    await filled(qdrant)
    env = await op(qdrant, "search", vector=[1.0, 0.0, 0.0], limit=2)
    assert env.status == "ok"
    assert [hit["id"] for hit in env.data] == [1, 2]
    assert env.data[0]["payload"] == {"team": "red", "name": "one"}
    assert env.data[0]["score"] > env.data[1]["score"]


async def test_search_honours_a_filter_and_can_leave_out_payloads(qdrant: QdrantTool) -> None:
    await filled(qdrant)
    env = await op(qdrant, "search", query=[1.0, 0.0, 0.0], limit=5, with_payload=False,
                   filter={"must": [{"key": "team", "match": {"value": "red"}}]})
    assert [hit["id"] for hit in env.data] == [1, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"]
    assert all("payload" not in hit for hit in env.data)


async def test_creating_an_existing_collection_is_harmless(qdrant: QdrantTool) -> None:
    await filled(qdrant)
    again = await op(qdrant, "create_collection", vector_size=3)
    assert again.data == {"collection": "docs", "created": False}
    assert len((await op(qdrant, "search", vector=[0, 0, 1], limit=10)).data) == 3


async def test_delete_by_ids_and_by_filter(qdrant: QdrantTool) -> None:
    await filled(qdrant)
    by_id = await op(qdrant, "delete", ids=[2])
    assert by_id.status == "ok" and by_id.data["status"] == "completed"
    by_filter = await op(qdrant, "delete", filter={"must": [{"key": "team", "match": {"value": "red"}}]})
    assert by_filter.status == "ok"
    assert (await op(qdrant, "search", vector=[1, 0, 0], limit=10)).data == []


async def test_a_local_directory_keeps_the_collection_across_tools(tmp_path: Path) -> None:
    first = QdrantTool()
    await filled(first, str(tmp_path / "store"))
    await first.close()
    second = QdrantTool()
    env = await op(second, "search", str(tmp_path / "store"), vector=[1, 0, 0], limit=1)
    await second.close()
    assert [hit["id"] for hit in env.data] == [1]


async def test_a_credential_can_carry_the_url(qdrant: QdrantTool) -> None:
    creds = StoredCredentials({"vec": ("qdrant", {"url": ":memory:"})})
    env = await qdrant.run(make_call("qdrant", {"operation": "create_collection", "collection": "c",
                                                "vector_size": 2, "auth": "vec"}, credentials=creds))
    assert env.data == {"collection": "c", "created": True}


@pytest.mark.parametrize(("operation", "config", "needle"), [
    ("search", {"vector": [1, 0, 0]}, "not found"),
    ("upsert", {"points": [{"id": 1.5, "vector": [1, 0, 0]}]}, "id"),
    ("delete", {}, "ids"),
    ("create_collection", {"vector_size": "big"}, "vector_size"),
    ("create_collection", {"vector_size": 3, "distance": "Hamming"}, "distance"),
    ("explode", {}, "one of"),
])
async def test_bad_requests_are_validation_errors(qdrant: QdrantTool, operation: str, config: dict[str, Any],
                                                  needle: str) -> None:
    env = await op(qdrant, operation, **config)
    assert env.status == "error" and env.error is not None
    assert env.error.kind == "validation" and needle in env.error.message


async def test_a_vector_of_the_wrong_size_is_a_validation_error(qdrant: QdrantTool) -> None:
    await filled(qdrant)
    env = await op(qdrant, "search", vector=[1, 0])
    assert env.error is not None and env.error.kind == "validation"


async def test_an_unreachable_server_is_a_retryable_connection_error(qdrant: QdrantTool) -> None:
    env = await op(qdrant, "search", f"http://127.0.0.1:{free_port()}", vector=[1, 0, 0], timeout=5)
    assert env.error is not None and env.error.kind == "connection" and env.error.retryable is True
