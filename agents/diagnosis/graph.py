"""The diagnosis as a LangGraph graph (the only module that imports `langgraph`):

    gather evidence -> classify with rules -> retrieve similar failures -> [refine with an LLM] -> result

`await diagnose(execution_id, executions=..., similar=..., llm=...)` returns a `Diagnosis`. Without an
LLM the diagnosis is complete, just plainer; without a similar-failure finder (or when it fails) the
diagnosis says so in `evidence_gaps` and goes on. Every diagnosis leaves scrubbed of secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph

from agents.diagnosis.evidence import gather
from agents.diagnosis.facts import Facts
from agents.diagnosis.model import Diagnosis
from agents.diagnosis.retrieve import SimilarFinder, similar_failures
from agents.diagnosis.rules import classify
from agents.diagnosis.scrub import scrub_diagnosis

if TYPE_CHECKING:
    from control_plane.services.executions import ExecutionService

log = logging.getLogger(__name__)

class LlmRefiner(Protocol):
    name: str

    async def refine(self, diagnosis: Diagnosis, facts: Facts | None = None) -> Diagnosis: ...


class State(TypedDict, total=False):
    execution_id: str
    facts: Facts
    diagnosis: Diagnosis


def build_graph(executions: ExecutionService, similar: SimilarFinder | None, llm: LlmRefiner | None,
                secrets: Iterable[str] = ()) -> Any:
    """The compiled graph; its input is {"execution_id": ...}, its output state holds "diagnosis"."""
    known = tuple(secrets)

    async def gather_node(state: State) -> State:
        return {"facts": await gather(state["execution_id"], executions)}

    def classify_node(state: State) -> State:
        return {"diagnosis": classify(state["facts"])}

    async def retrieve_node(state: State) -> State:
        diagnosis = state["diagnosis"]
        return {"diagnosis": await similar_failures(diagnosis, similar, executions)}

    async def refine_node(state: State) -> State:
        assert llm is not None
        return {"diagnosis": await llm.refine(state["diagnosis"], state.get("facts"))}

    def result_node(state: State) -> State:
        return {"diagnosis": scrub_diagnosis(state["diagnosis"], known)}

    def after_retrieve(state: State) -> str:
        return "refine" if llm is not None else "result"

    graph = StateGraph(State)
    graph.add_node("gather", gather_node)
    graph.add_node("classify", classify_node)
    graph.add_node("retrieve", retrieve_node)
    graph.add_node("refine", refine_node)
    graph.add_node("result", result_node)
    graph.add_edge(START, "gather")
    graph.add_edge("gather", "classify")
    graph.add_edge("classify", "retrieve")
    graph.add_conditional_edges("retrieve", after_retrieve, {"refine": "refine", "result": "result"})
    graph.add_edge("refine", "result")
    graph.add_edge("result", END)
    return graph.compile()


async def diagnose(execution_id: str, *, executions: ExecutionService, similar: SimilarFinder | None = None,
                   llm: LlmRefiner | None = None, secrets: Sequence[str] = ()) -> Diagnosis:
    """Diagnose one execution. NotFoundError (control_plane.errors) for an unknown id."""
    graph = build_graph(executions, similar, llm, secrets)
    state = await graph.ainvoke({"execution_id": execution_id})
    diagnosis = state["diagnosis"]
    assert isinstance(diagnosis, Diagnosis)
    return diagnosis
