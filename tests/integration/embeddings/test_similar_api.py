"""The REST endpoints of similar failures, over the app the control plane builds, with the agents' search
in app.state.similar (as the `noetl` entry point wires it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agents.embeddings.embedder import MiniLMEmbedder
from agents.embeddings.runtime import EmbeddingsRuntime
from control_plane.app import ApiServices, create_app
from control_plane.services.auth import AuthService
from control_plane.services.indexing import IndexingFeed
from control_plane.stack import Stack
from tests.integration.embeddings.test_similar_failures import failing_runs

pytestmark = pytest.mark.anyio


async def test_the_similar_endpoints_answer_from_the_index(stack: Stack, embedder: MiniLMEmbedder,
                                                           tmp_path: Path) -> None:
    assert stack.store is not None
    ids = await failing_runs(stack)
    token = (await AuthService(stack.store).create_token("test-viewer", "viewer"))[1]
    app = create_app(ApiServices.from_stack(stack))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        off = await client.get(f"/api/executions/{ids['orders']}/similar")
        assert off.status_code == 503 and off.json()["code"] == "similar_unavailable"

        embeddings = EmbeddingsRuntime.open(IndexingFeed(stack.store), path=tmp_path / "qdrant",
                                            embedder=embedder)
        try:
            await embeddings.indexer.catch_up()
            app.state.similar = embeddings.similar
            response = await client.get(f"/api/executions/{ids['orders']}/similar", params={"limit": 2})
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            assert [i["execution_id"] for i in items] == [ids["invoices"], ids["report"]]
            assert items[0]["next"]["later_execution_id"] == ids["invoices_again"]
            response = await client.get("/api/search", params={"q": "connection refused", "limit": 1})
            assert response.status_code == 200
            assert response.json()["items"][0]["error_kind"] == "connection"
            missing = await client.get("/api/executions/nope/similar")
            assert missing.status_code == 404
            unauthorized = await client.get("/api/search", params={"q": "x"}, headers={"Authorization": ""})
            assert unauthorized.status_code == 401
        finally:
            await embeddings.close()
