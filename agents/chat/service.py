"""The chat over the event log: a question in, an answer with its evidence out, the conversation kept.

    chat = ChatService(executions, catalog, policies, conversations, diagnose=diagnosis.diagnose)
    reply = await chat.ask("why did last night's payments run fail?", None, actor=actor, role="operator")

Without an LLM it reads what the question points at (agents.chat.questions), resolves it against the
executions and the catalog (an execution id, a playbook, "the last run of X", "what failed most recently",
"yesterday", or what the conversation already points at), and answers from the diagnosis, the similar
failures and the proposals (agents.chat.answers). With an LLM (agents.chat.planner) the model plans calls
over the same tools and writes the answer; the caller's role applies to every call either way, and the chat
never approves anything.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from agents.chat import answers
from agents.chat.planner import ChatPlanner
from agents.chat.questions import Playbook, Question, read_question
from agents.chat.tools import ChatTools
from agents.diagnosis.model import Diagnosis
from agents.llm_client import LlmSettings
from agents.proposals.from_diagnosis import plan
from control_plane.errors import InvalidArgumentError, NotFoundError
from control_plane.services.auth import role_allows
from engine.errors import NoetlError
from policies.model import Actor

if TYPE_CHECKING:
    from control_plane.services.catalog import CatalogService
    from control_plane.services.chat import ConversationService
    from control_plane.services.executions import ExecutionService
    from control_plane.services.policies import PolicyService
    from control_plane.services.secrets import SecretValues

log = logging.getLogger(__name__)

Diagnose = Callable[[str], Awaitable[Diagnosis]]


class Execution(Protocol):
    """An execution as the executions service returns it (the fields the chat reads)."""

    @property
    def execution_id(self) -> str: ...
    @property
    def playbook_path(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def last_seq(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...
NEEDS_DIAGNOSIS = ("why", "fix", "transient", "similar", "propose")
LIST_LIMIT = 10


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the actor proposals are made as (`token:<id>`, `local:<user>`), and the role every call
    is checked against."""

    actor: Actor
    role: str


@dataclass
class ChatReply:
    conversation_id: str
    answer: str
    execution_id: str | None = None
    playbook_path: str | None = None
    diagnosis: dict[str, Any] | None = None
    similar: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    intent: str | None = None
    answered_by: str = "rules"  # rules | rules+llm
    tools: list[str] = field(default_factory=list)  # the tools the LLM called, in order

    def as_json(self) -> dict[str, Any]:
        return {"conversation_id": self.conversation_id, "answer": self.answer,
                "execution_id": self.execution_id, "playbook_path": self.playbook_path,
                "diagnosis": self.diagnosis, "similar": self.similar, "proposals": self.proposals,
                "references": self.references, "intent": self.intent, "answered_by": self.answered_by,
                "tools": self.tools}


@dataclass
class _Target:
    execution: Execution | None = None
    playbook_path: str | None = None
    listed: list[Execution] | None = None  # the "list" intent: the runs it asked for
    listed_what: str = "runs"
    note: str | None = None  # why nothing was resolved, or what was assumed


class ChatService:
    def __init__(self, executions: ExecutionService, catalog: CatalogService, policies: PolicyService,
                 conversations: ConversationService, *, diagnose: Diagnose, similar: Any = None,
                 llm: LlmSettings | None = None, secrets: SecretValues | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.executions = executions
        self.catalog = catalog
        self.policies = policies
        self.conversations = conversations
        self.diagnose = diagnose
        self.similar = similar  # the similar-failure finder, for the LLM's tools
        self.llm = llm
        self.secrets = secrets
        self.clock = clock

    async def ask(self, message: str, conversation_id: str | None, *, actor: Actor, role: str,
                  about: str | None = None) -> ChatReply:
        """Answer `message` in the asker's conversation (a new one without an id) and store both.
        `about` is the execution the asker is looking at (the console's page): what "it" means then."""
        caller = Caller(actor, role)
        text = message.strip()
        if not text:
            raise InvalidArgumentError("the message is empty", where="message", fix="ask a question, e.g. "
                                       "\"why did the last run of examples/flaky fail?\"")
        conversation = await self.conversations.open(conversation_id, caller.actor.id)
        focus = dict(conversation.focus)
        if about:
            try:
                seen = await self.executions.get(about)
                focus.update(execution_id=seen.execution_id, playbook_path=seen.playbook_path)
            except NotFoundError:
                pass
        playbooks = [Playbook(p.path, p.name) for p in await self.catalog.list()]
        question = read_question(text, playbooks, self.clock())
        reply = ChatReply(conversation_id=conversation.conversation_id, answer="", intent=question.intent)
        out = answers.Composed()
        target = await self._resolve(question, focus)
        if target.note:
            out.say(target.note)
        await self._answer(question, target, caller, reply, out)
        reply.answer = out.text or "I could not tell what you are asking about."
        reply.references = out.references
        reply.playbook_path = reply.playbook_path or target.playbook_path
        if target.execution is not None:
            reply.execution_id = target.execution.execution_id
            reply.playbook_path = target.execution.playbook_path
        if self.llm is not None:
            await self._with_llm(text, focus, caller, reply)
        await self.conversations.record(conversation, text, reply.as_json(), _focus(focus, reply, target))
        log.info("chat: answered (intent %s, execution %s)", question.intent, reply.execution_id,
                 extra={"execution_id": reply.execution_id, "conversation_id": reply.conversation_id})
        return reply

    async def _with_llm(self, question: str, focus: dict[str, Any], caller: Caller, reply: ChatReply) -> None:
        """Let the LLM plan tool calls from the rules' answer and write the answer; on any failure the
        rules' answer stands, with a note."""
        assert self.llm is not None
        known = await self.secrets.all() if self.secrets is not None else frozenset()
        tools = ChatTools(self.executions, self.catalog, self.policies, diagnose=self.diagnose,
                          similar=self.similar, actor=caller.actor, role=caller.role)
        planner = ChatPlanner(self.llm, secrets=known)
        try:
            planned = await planner.plan(question, focus, reply.as_json(), tools)
        finally:
            await planner.close()
        if isinstance(planned, str):
            reply.answer += f"\n(Not refined by the LLM: {planned}; this is the rules' answer.)"
            return
        reply.answer, reply.references, reply.answered_by = planned.answer, planned.references, "rules+llm"
        reply.tools = planned.calls
        if planned.execution_id and planned.execution_id != reply.execution_id:
            try:
                execution = await self.executions.get(planned.execution_id)
            except NotFoundError:
                execution = None
            if execution is not None:
                reply.execution_id, reply.playbook_path = execution.execution_id, execution.playbook_path
        if tools.diagnoses:
            reply.diagnosis = tools.diagnoses[-1]
            reply.similar = list(tools.diagnoses[-1].get("similar_failures") or [])
        reply.proposals = [*tools.proposals, *[p for p in reply.proposals
                                               if p["id"] not in {q["id"] for q in tools.proposals}]]

    async def history(self, conversation_id: str, *, actor: Actor) -> list[Any]:
        """The asker's conversation, oldest question first (NotFoundError for another's or an unknown one)."""
        return list(await self.conversations.turns(conversation_id, actor.id))

    # ------------------------------------------------------------------ what the question points at
    async def _resolve(self, q: Question, focus: dict[str, Any]) -> _Target:
        if q.execution_id:
            try:
                return _Target(execution=await self.executions.get(q.execution_id))
            except NotFoundError:
                return _Target(note=f"There is no execution {q.execution_id} in this NoETL's event log.")
        if q.ambiguous:
            return _Target(note="Several playbooks match that: " + ", ".join(q.ambiguous)
                           + ". Which one? (name its path)")
        path = q.playbook.path if q.playbook else None
        weak = q.playbook is not None and q.playbook.by_word
        if weak and q.follow_up and focus.get("execution_id"):
            path = None  # one word of some playbook's name, in a follow-up ("that"): the conversation wins
        explicit = bool(path or q.window or (q.newest and not q.follow_up) or q.intent == "list")
        if not explicit and q.follow_up and focus.get("execution_id"):
            try:
                return _Target(execution=await self.executions.get(str(focus["execution_id"])))
            except NotFoundError:
                pass
        if not explicit and q.follow_up and focus.get("playbook_path"):
            path = str(focus["playbook_path"])
        elif not explicit and q.intent in ("proposals", "decide"):
            return _Target()  # nothing named: every open proposal
        failed_only = q.failures and q.intent != "status"
        page = await self.executions.list(path=path, status="failed" if failed_only else None,
                                          since=q.window.since if q.window else None,
                                          until=q.window.until if q.window else None,
                                          limit=LIST_LIMIT if q.intent in ("list", "proposals") else 1)
        what = ("failed runs" if failed_only else "runs") + (f" of {path}" if path else "") + (
            f" {q.window.said}" if q.window else "")
        if q.intent == "list":
            return _Target(playbook_path=path, listed=list(page.items), listed_what=what)
        if page.items:
            return _Target(execution=page.items[0], playbook_path=path)
        if failed_only and q.intent is None:  # "how did X go yesterday": any run will do
            page = await self.executions.list(path=path, since=q.window.since if q.window else None,
                                              until=q.window.until if q.window else None, limit=1)
            if page.items:
                return _Target(execution=page.items[0], playbook_path=path)
        return _Target(playbook_path=path, note=f"I found no {what}.")

    # ------------------------------------------------------------------ answering
    async def _answer(self, q: Question, target: _Target, caller: Caller, reply: ChatReply,
                      out: answers.Composed) -> None:
        if target.listed is not None:
            answers.executions_list(out, [_execution_json(e) for e in target.listed], target.listed_what)
            return
        if q.intent == "decide":
            out.say("I never approve, reject or roll back a change: a person with the approver role decides "
                    "(not the proposal's author), in the console's proposals queue or with "
                    "`noetl proposals approve|reject|rollback ID --reason ...`.")
            await self._proposals(target, reply, out)
            return
        if q.intent == "proposals":
            await self._proposals(target, reply, out)
            return
        execution = target.execution
        if execution is None:
            return
        intent = q.intent or ("why" if execution.status == "failed" else "status")
        if intent == "status" or execution.status in ("pending", "running") or (
                intent == "why" and execution.status != "failed" and not q.failures):
            await self._status(execution, out)
            return
        diagnosis = await self.diagnose(execution.execution_id)
        reply.diagnosis = diagnosis.model_dump(mode="json")
        reply.similar = [s.model_dump(mode="json") for s in diagnosis.similar_failures]
        if intent == "transient":
            answers.transience(out, diagnosis)
        elif intent == "similar":
            answers.similar(out, diagnosis)
        elif intent == "fix":
            drafts, notes = await self._plan(diagnosis)
            reply.proposals = await self._open_proposals(diagnosis)
            answers.fixes(out, diagnosis, drafts, notes, reply.proposals)
        elif intent == "propose":
            await self._propose(diagnosis, caller, reply, out)
        else:
            answers.why(out, diagnosis)
            reply.proposals = await self._open_proposals(diagnosis)
            answers.proposals_list(out, reply.proposals, empty=None)

    async def _status(self, execution: Execution, out: answers.Composed) -> None:
        summary = await self.executions.summary(execution.execution_id)
        terminal = None
        if execution.last_seq:
            last = await self.executions.events(execution.execution_id, after_seq=execution.last_seq - 1,
                                                limit=1)
            terminal = last[0].event_id if last else None
        answers.status(out, _execution_json(execution), dict(summary.get("steps") or {}), terminal)

    async def _plan(self, diagnosis: Diagnosis) -> tuple[list[dict[str, Any]], list[str]]:
        step = diagnosis.root_cause_step or diagnosis.failed_step
        if not diagnosis.playbook_path or not step:
            return [], []
        info = await self.policies.step_info(diagnosis.playbook_path, step, durations=True)
        outcome = plan(diagnosis, info, await self.policies.guardrails())
        return [d.model_dump(mode="json", exclude_none=True) for d in outcome.drafts], outcome.notes

    async def _open_proposals(self, diagnosis: Diagnosis) -> list[dict[str, Any]]:
        if not diagnosis.playbook_path:
            return []
        step = diagnosis.root_cause_step or diagnosis.failed_step
        found = await self.policies.list(path=diagnosis.playbook_path, limit=20)
        return [p.model_dump(mode="json", exclude={"transitions", "diagnosis"}) for p in found
                if p.is_open and (step is None or p.target.step == step)]

    async def _proposals(self, target: _Target, reply: ChatReply, out: answers.Composed) -> None:
        path = target.execution.playbook_path if target.execution else target.playbook_path
        found = await self.policies.list(path=path, limit=20)
        reply.proposals = [p.model_dump(mode="json", exclude={"transitions", "diagnosis"}) for p in found
                           if p.is_open]
        answers.proposals_list(out, reply.proposals,
                               empty="No proposal is open" + (f" for {path}." if path else "."))

    async def _propose(self, diagnosis: Diagnosis, caller: Caller, reply: ChatReply,
                       out: answers.Composed) -> None:
        out.say(answers.headline(diagnosis))
        if not role_allows(caller.role, "operator"):
            out.say(f"Your role ({caller.role}) may not propose changes; a token with the operator role (or "
                    "higher) can, e.g. `noetl proposals propose` or by asking me with it.")
            return
        drafts, notes = await self._plan(diagnosis)
        if not drafts:
            out.say("There is no guarded configuration change to propose for this failure"
                    + (f": {notes[0]}" if notes else "."))
            reply.proposals = await self._open_proposals(diagnosis)
            answers.proposals_list(out, reply.proposals, empty=None)
            return
        try:
            proposal = await self.policies.propose(drafts[0], caller.actor)
        except NoetlError as exc:  # the guardrails' refusal (409) says which rule and how to fix
            out.say(f"The guardrails refused the change: {exc.message}")
            reply.proposals = await self._open_proposals(diagnosis)
            answers.proposals_list(out, reply.proposals, empty=None)
            return
        reply.proposals = [proposal.model_dump(mode="json", exclude={"transitions", "diagnosis"})]
        answers.proposed(out, reply.proposals[0])


def _focus(before: dict[str, Any], reply: ChatReply, target: _Target) -> dict[str, Any]:
    """What the conversation points at after this answer: its execution and playbook; a list or a playbook
    without a run leaves no execution in focus (a follow-up then asks about the playbook's newest run)."""
    focus = dict(before)
    if reply.execution_id:
        focus["execution_id"] = reply.execution_id
    elif target.listed is not None or (reply.playbook_path
                                       and reply.playbook_path != before.get("playbook_path")):
        focus.pop("execution_id", None)
    if reply.playbook_path:
        focus["playbook_path"] = reply.playbook_path
    return focus


def _execution_json(e: Execution) -> dict[str, Any]:
    return {"execution_id": e.execution_id, "playbook_path": e.playbook_path, "status": e.status,
            "created_at": e.created_at, "ended_at": e.ended_at}
