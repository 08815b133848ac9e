"""The proposals agent: a LangGraph graph per proposal, checkpointed in Postgres (thread id = proposal id).

    START -> decision ..(interrupt: the approval)..   approved -> apply -> executions
                                                      rejected, expired -> END
    executions ..(interrupt: N executions after the change).. -> measure
    measure -> verified: END | worse: a rollback is proposed (it gets a thread of its own): END
            | not enough runs of the step yet: back to executions

`ProposalLoop.submit(diagnosis)` turns a diagnosis into drafts (`from_diagnosis.plan`), submits each
through the policies service (the guardrails decide) and starts its thread, which stops at the approval
interrupt. The wait is a checkpoint in Postgres, so ANY process may resume it: `tick()` resumes every
thread whose wait is over (its proposal decided; enough executions since its change) and starts threads
for proposals made elsewhere (through the API, by people). `run(stop)` ticks whenever a proposal changes
(the service notifies `noetl_proposals`) and every few seconds. Approving through the service applies the
change at once, so the overlay never waits for this agent; the agent carries the loop on to measurement.

This is the only module of the proposals agent that imports langgraph (pyproject's import contracts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from agents.proposals.from_diagnosis import field_of, plan
from control_plane.services.executions import ExecutionService
from control_plane.services.policies import AGENT, PolicyService, ProposalRefusedError
from policies.model import OPEN_STATES, Actor, Proposal

log = logging.getLogger(__name__)

CLOSED_STATES = ("verified", "rejected", "expired", "rolled_back")


class LoopState(TypedDict, total=False):
    proposal_id: str
    state: str  # the proposal's state as the graph last saw it
    verdict: str | None
    rollback_id: str | None


@dataclass(frozen=True)
class Submitted:
    """What became of one draft: the proposal, or the guardrails' refusal."""

    proposal: Proposal | None
    refused: str | None = None
    violations: tuple[str, ...] = ()


def build_graph(policies: PolicyService, actor: Actor = AGENT) -> StateGraph:
    async def decision(state: LoopState) -> LoopState:
        answer = interrupt({"waiting_for": "decision", "proposal_id": state["proposal_id"]})
        return {"state": str(answer.get("state"))}

    def after_decision(state: LoopState) -> str:
        return "apply" if state.get("state") in ("approved", "applied") else END

    async def apply(state: LoopState) -> LoopState:
        proposal = await policies.apply(state["proposal_id"], actor, "applied by the proposals agent")
        return {"state": proposal.state}

    async def executions(state: LoopState) -> LoopState:
        answer = interrupt({"waiting_for": "executions", "proposal_id": state["proposal_id"]})
        return {"state": str(answer.get("state"))}

    def after_executions(state: LoopState) -> str:
        return "measure" if state.get("state") == "applied" else END

    async def measure(state: LoopState) -> LoopState:
        proposal = await policies.measure(state["proposal_id"], actor)
        return {"state": proposal.state, "rollback_id": proposal.rollback_id,
                "verdict": proposal.measurement.verdict if proposal.measurement else None}

    def after_measure(state: LoopState) -> str:
        if state.get("state") == "applied" and not state.get("rollback_id"):
            return "executions"  # the step did not run often enough yet
        return END

    graph = StateGraph(LoopState)
    graph.add_node("decision", decision)
    graph.add_node("apply", apply)
    graph.add_node("executions", executions)
    graph.add_node("measure", measure)
    graph.add_edge(START, "decision")
    graph.add_conditional_edges("decision", after_decision, ["apply", END])
    graph.add_edge("apply", "executions")
    graph.add_conditional_edges("executions", after_executions, ["measure", END])
    graph.add_conditional_edges("measure", after_measure, ["executions", END])
    return graph


async def setup_checkpointer(saver: AsyncPostgresSaver, attempts: int = 5) -> None:
    """Create langgraph's checkpoint tables; processes that race to do it retry instead of failing."""
    for attempt in range(1, attempts + 1):
        try:
            await saver.setup()
            return
        except Exception as exc:  # a concurrent setup won the race on langgraph's migration rows
            if attempt == attempts:
                raise
            log.debug("checkpointer setup raced another process (%s); again", type(exc).__name__)
            await asyncio.sleep(0.2 * attempt)


class ProposalLoop:
    """Open with `async with ProposalLoop.open(policies, dsn) as loop:` (dsn: the Postgres that holds the
    checkpoints, normally NoETL's own)."""

    def __init__(self, policies: PolicyService, checkpointer: AsyncPostgresSaver, actor: Actor = AGENT,
                 diagnose: Callable[[str], Awaitable[Any]] | None = None,
                 executions: ExecutionService | None = None) -> None:
        self.policies = policies
        self.actor = actor
        self.diagnose = diagnose  # execution id -> Diagnosis, for `watch_failures`
        self.executions = executions  # where `watch_failures` finds the failed executions
        self.graph = build_graph(policies, actor).compile(checkpointer=checkpointer)
        self._seen_failures: set[str] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, policies: PolicyService, dsn: str, *, actor: Actor = AGENT,
                   diagnose: Callable[[str], Awaitable[Any]] | None = None,
                   executions: ExecutionService | None = None) -> AsyncIterator[ProposalLoop]:
        async with AsyncPostgresSaver.from_conn_string(dsn) as saver:
            await setup_checkpointer(saver)
            yield cls(policies, saver, actor, diagnose, executions)

    @staticmethod
    def _config(proposal_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": proposal_id}}

    async def waiting_for(self, proposal_id: str) -> str | None:
        """What the proposal's thread waits for: "decision", "executions", None (ended or no thread)."""
        snapshot = await self.graph.aget_state(self._config(proposal_id))
        for pending in snapshot.interrupts or ():
            value = pending.value
            if isinstance(value, dict):
                return str(value.get("waiting_for"))
        return None

    async def state_of(self, proposal_id: str) -> dict[str, Any]:
        """The thread's state values ({} when it has none)."""
        return dict((await self.graph.aget_state(self._config(proposal_id))).values or {})

    async def start(self, proposal_id: str) -> str | None:
        """Start the proposal's thread (it stops at the approval interrupt); a started one is left alone."""
        snapshot = await self.graph.aget_state(self._config(proposal_id))
        if snapshot.values or snapshot.next:
            return await self.waiting_for(proposal_id)
        await self.graph.ainvoke({"proposal_id": proposal_id, "state": "proposed"}, self._config(proposal_id))
        return await self.waiting_for(proposal_id)

    async def resume(self, proposal_id: str, state: str) -> dict[str, Any]:
        """Resume the thread's interrupt with the proposal's state; returns the thread's values."""
        result = await self.graph.ainvoke(Command(resume={"state": state}), self._config(proposal_id))
        return dict(result or {})

    # ------------------------------------------------------------------ the loop
    async def submit(self, diagnosis: Any) -> list[Submitted]:
        """Propose what the diagnosis calls for, through the guardrails; start each proposal's thread."""
        path = field_of(diagnosis, "playbook_path")
        step = field_of(diagnosis, "root_cause_step") or field_of(diagnosis, "failed_step")
        info = await self.policies.step_info(str(path), str(step), durations=True) if path and step else None
        config = await self.policies.guardrails()
        outcome = plan(diagnosis, info, config)
        for note in outcome.notes:
            log.info("proposals: %s", note)
        submitted: list[Submitted] = []
        for draft in outcome.drafts:
            try:
                proposal = await self.policies.propose(draft, self.actor)
            except ProposalRefusedError as exc:
                log.info("proposals: the guardrails refused a change of %s step %s: %s", draft.target.path,
                         draft.target.step, exc.message)
                submitted.append(Submitted(None, exc.message, tuple(v.code for v in exc.violations)))
                continue
            await self.start(proposal.id)
            submitted.append(Submitted(proposal))
        return submitted

    async def tick(self) -> list[str]:
        """Resume every thread whose wait is over; start threads for proposals made elsewhere. Returns
        the ids of the proposals whose thread moved."""
        await self.policies.expire_stale()
        moved: list[str] = []
        proposals = await self.policies.list(state=OPEN_STATES, limit=1000)
        proposals += await self.policies.list(state=CLOSED_STATES, limit=200)
        for proposal in proposals:
            try:
                if await self._advance(proposal):
                    moved.append(proposal.id)
            except Exception:  # one proposal's trouble must not stop the others
                log.exception("proposals: advancing the thread of %s failed", proposal.id)
        return moved

    async def _advance(self, proposal: Proposal) -> bool:
        waiting = await self.waiting_for(proposal.id)
        if waiting is None:
            if proposal.state not in OPEN_STATES or (await self.state_of(proposal.id)):
                return False
            waiting = await self.start(proposal.id)
        current = await self.policies.get(proposal.id)
        if waiting == "decision" and current.state != "proposed":
            await self.resume(current.id, current.state)
            return True
        if waiting == "executions":
            if current.state != "applied":
                await self.resume(current.id, current.state)
                return True
            if await self.policies.ready_to_measure(current.id):
                values = await self.resume(current.id, "applied")
                return values.get("state") != "applied" or bool(values.get("rollback_id"))
        return False

    async def watch_failures(self, limit: int = 20) -> list[Submitted]:
        """Diagnose the executions that failed since the loop started watching, and submit proposals."""
        if self.diagnose is None or self.executions is None:
            return []
        page = await self.executions.list(status="failed", limit=limit)
        known = {e for p in await self.policies.list(limit=1000) for e in p.evidence}  # proposed already
        submitted: list[Submitted] = []
        for execution in reversed(page.items):
            if execution.execution_id in self._seen_failures | known or execution.parent_execution_id:
                continue
            self._seen_failures.add(execution.execution_id)
            try:
                diagnosis = await self.diagnose(execution.execution_id)
            except Exception:
                log.exception("proposals: diagnosing %s failed", execution.execution_id)
                continue
            submitted.extend(await self.submit(diagnosis))
        return submitted

    async def prime(self) -> None:
        """Remember the failures already there: `watch_failures` looks at new ones only."""
        if self.executions is not None:
            page = await self.executions.list(status="failed", limit=1000)
            self._seen_failures.update(e.execution_id for e in page.items)

    async def run(self, stop: asyncio.Event, *, poll_s: float = 5.0,
                  wake: Callable[[float], Awaitable[bool]] | None = None) -> None:
        """Tick until `stop` is set: on every proposal change (`wake`, e.g. the service's LISTEN) or poll."""
        await self.prime()
        while not stop.is_set():
            try:
                await self.watch_failures()
                await self.tick()
            except Exception:  # keep watching: the next tick reads everything again
                log.exception("proposals: a tick failed")
            if wake is not None:
                await wake(poll_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_s)
