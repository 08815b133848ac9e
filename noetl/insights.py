"""What the serving process adds on top of the control plane: diagnosis and similar-failure search.

The control plane sits below the agents, so the API reads a `Diagnoser` and a `SimilarSearch` from
`app.state`; this entry-point module builds them from the agents and hands them to `serve_api`.
The indexer (embeddings of ended executions) runs in the server process when asked (`--indexer`),
or separately as `noetl indexer start`; without it, diagnoses are complete but carry an evidence gap
instead of similar failures, and the similar-failure routes answer 503 naming the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from control_plane.stack import Stack

log = logging.getLogger(__name__)


@dataclass
class Insights:
    state: dict[str, Any] = field(default_factory=dict)  # for serve_api(state=...)
    _embeddings: Any = None

    async def close(self) -> None:
        if self._embeddings is not None:
            await self._embeddings.close()
            self._embeddings = None


async def open_insights(stack: Stack, *, indexer: bool) -> Insights:
    from agents.diagnosis.service import DiagnosisService
    from control_plane.services.secrets import SecretValues
    from noetl.llm_settings import llm_settings

    assert stack.store is not None and stack.executions is not None
    insights = Insights()
    similar = None
    if indexer:
        from agents.embeddings.runtime import EmbeddingsRuntime
        from control_plane.services.indexing import IndexingFeed
        from noetl.commands.similar import qdrant_target

        embeddings = EmbeddingsRuntime.open(IndexingFeed(stack.store), **qdrant_target(stack.config.home))
        embeddings.start()
        insights._embeddings = embeddings
        similar = embeddings.similar
        insights.state["similar"] = similar
    insights.state["diagnosis"] = DiagnosisService(stack.executions, secrets=SecretValues(stack.store),
                                                   similar=similar, llm=llm_settings())
    return insights
