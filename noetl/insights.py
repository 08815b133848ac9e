"""What the serving process adds on top of the control plane: diagnosis, similar-failure search, the chat.

The control plane sits below the agents, so the API reads a `Diagnoser` and a `SimilarSearch` from
`app.state`; this entry-point module builds them from the agents and hands them to `serve_api`.
The indexer (embeddings of ended executions) runs in the server process when asked (`--indexer`),
or separately as `noetl indexer start`; without it, diagnoses are complete but carry an evidence gap
instead of similar failures, and the similar-failure routes answer 503 naming the fix. The proposals
agent (diagnoses of new failures -> guarded proposals -> the approval wait -> measurement) runs here
when asked (`--agent`), or separately as `noetl proposals watch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from control_plane.stack import Stack
from noetl.llm_settings import llm_settings
from noetl.settings import export_targets, qdrant_target

log = logging.getLogger(__name__)


@dataclass
class Insights:
    state: dict[str, Any] = field(default_factory=dict)  # for serve_api(state=...)
    _embeddings: Any = None
    _agent: contextlib.AsyncExitStack | None = None
    _exporter: Any = None  # agents.analytics.runtime.ExportRuntime when run here

    def components(self, pid: int) -> list[dict[str, Any]]:
        """The indexer and the proposals agent as `noetl dev status` shows them (`off` when not run here)."""
        return [{"name": name, "pid": pid if on else None, "status": "up" if on else "off", "restarts": 0,
                 "detail": None if on else f"not run by this process (`{fix}`)"}
                for name, on, fix in (("indexer", self._embeddings is not None, "noetl indexer start"),
                                      ("agent", self._agent is not None, "noetl proposals watch"),
                                      ("exporter", self._exporter is not None, "noetl export run"))]

    async def close(self) -> None:
        if self._exporter is not None:
            await self._exporter.close()
            self._exporter = None
        if self._agent is not None:
            await self._agent.aclose()
            self._agent = None
        if self._embeddings is not None:
            await self._embeddings.close()
            self._embeddings = None


async def open_insights(stack: Stack, *, indexer: bool, agent: bool = False,
                        exporter: bool = False) -> Insights:
    from agents.diagnosis.service import DiagnosisService
    from control_plane.services.secrets import SecretValues

    assert stack.store is not None and stack.executions is not None
    insights = Insights()
    similar = None
    if indexer:
        from agents.embeddings.runtime import EmbeddingsRuntime
        from control_plane.services.indexing import IndexingFeed

        embeddings = EmbeddingsRuntime.open(IndexingFeed(stack.store), **qdrant_target(stack.config.home))
        embeddings.start()
        insights._embeddings = embeddings
        similar = embeddings.similar
        insights.state["similar"] = similar
    diagnosis = DiagnosisService(stack.executions, secrets=SecretValues(stack.store), similar=similar,
                                 llm=llm_settings())
    insights.state["diagnosis"] = diagnosis
    insights.state["insights"] = insights_service(stack, similar)
    insights.state["chat"] = chat_service(stack, diagnosis, similar)
    if agent:
        try:
            insights._agent = await _start_agent(stack, diagnosis)
        except BaseException:
            await insights.close()
            raise
    if exporter:
        insights._exporter = start_exporter(stack)
    return insights


def insights_service(stack: Stack, similar: Any = None) -> Any:
    """Durations, bottlenecks, anomalies and failure clusters over the stack's event log; with the
    indexer's embeddings model (`similar`), failure signatures are merged by their embeddings."""
    from agents.insights.service import InsightsService
    from control_plane.services.insights import InsightsHistory

    assert stack.store is not None
    embedder = getattr(similar, "embedder", None)
    return InsightsService(InsightsHistory(stack.store), embed=embedder.embed if embedder else None)


def start_exporter(stack: Stack) -> Any:
    """The analytics exporter (agents.analytics) as a task of this process when NOETL_CLICKHOUSE_URL or
    NOETL_EXPORT_DIR is set (its runtime, to close), else None."""
    clickhouse_url, export_dir = export_targets()
    if not clickhouse_url and not export_dir:
        return None
    from agents.analytics.runtime import ExportRuntime, open_sinks
    from control_plane.services.exports import ExportFeed

    assert stack.store is not None
    runtime = ExportRuntime.open(ExportFeed(stack.store), open_sinks(clickhouse_url, export_dir))
    runtime.start()
    return runtime


def chat_service(stack: Stack, diagnosis: Any, similar: Any = None) -> Any:
    """The chat over the stack's services, diagnosing through `diagnosis` (the same as the API's); with
    the configured LLM (NOETL_LLM_*), if any, planning tool calls and writing the answers."""
    from agents.chat.service import ChatService
    from control_plane.services.catalog import CatalogService
    from control_plane.services.chat import ConversationService
    from control_plane.services.policies import PolicyService, PolicySettings
    from control_plane.services.secrets import SecretValues

    assert stack.store is not None and stack.executions is not None
    return ChatService(stack.executions, CatalogService(stack.store),
                       PolicyService(stack.store, PolicySettings(pools=stack.pool_names)),
                       ConversationService(stack.store), diagnose=diagnosis.diagnose, similar=similar,
                       llm=llm_settings(), secrets=SecretValues(stack.store))


async def _start_agent(stack: Stack, diagnosis: Any) -> contextlib.AsyncExitStack:
    """The proposals agent in a task of this loop, until the returned stack is closed."""
    from agents.proposals.loop import ProposalLoop  # langgraph only where the agent runs
    from control_plane.services.policies import PolicyService, PolicySettings
    from control_plane.store.policies import ProposalNotifications

    assert stack.store is not None
    policies = PolicyService(stack.store, PolicySettings(pools=stack.pool_names))
    resources = contextlib.AsyncExitStack()
    loop = await resources.enter_async_context(ProposalLoop.open(
        policies, stack.pg_dsn, diagnose=diagnosis.diagnose, executions=stack.executions))
    notes = ProposalNotifications(stack.pg_dsn)
    await notes.start()
    resources.push_async_callback(notes.close)
    stop = asyncio.Event()

    async def run() -> None:
        try:
            await loop.run(stop, wake=notes.wait)
        except Exception:
            log.exception("the proposals agent stopped; `noetl proposals watch` can take over")

    task = asyncio.create_task(run(), name="noetl-proposals-agent")

    async def halt() -> None:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()

    resources.push_async_callback(halt)
    log.info("the proposals agent runs in this process")
    return resources
