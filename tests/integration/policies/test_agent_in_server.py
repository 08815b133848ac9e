"""The proposals agent inside the serving process (`noetl server start --agent`, the default): a new
failure of a flaky step becomes a proposed retry, waiting for a person's approval, with nobody asking."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from noetl.insights import open_insights
from tests.harness.polling import poll
from tests.integration.policies.conftest import Loop
from tests.integration.policies.test_closed_loop import FLAKY

pytestmark = pytest.mark.anyio


async def test_the_server_s_agent_proposes_a_retry_for_a_new_flaky_failure(loop: Loop,
                                                                            tmp_path: Path) -> None:
    path = await loop.register(f"flaky_{uuid.uuid4().hex[:8]}", FLAKY)
    counter = tmp_path / "counter"
    history = [await loop.run(path, {"counter": str(counter)}) for _ in range(4)]
    assert [s["status"] for s in history] == ["failed", "completed", "failed", "completed"]
    insights = await open_insights(loop.stack, indexer=False, agent=True)
    try:
        failed = await loop.run(path, {"counter": str(counter)})  # a new failure, after the agent started
        assert failed["status"] == "failed"
        [proposal] = await poll(lambda: loop.policies.list(path=path), timeout_s=60,
                                what="the agent's proposal")
        assert proposal.state == "proposed" and proposal.author == "agent:proposals"
        assert proposal.target.step == "fetch"
        assert proposal.change is not None and proposal.change.retry is not None
    finally:
        await insights.close()
