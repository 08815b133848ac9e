"""The tools the chat's LLM planner may call: the MCP server's tools, by the same names and arguments, run
over the control plane's services with the asker's role checked per call (reading: viewer; registering,
executing, cancelling and proposing: operator).

Like the MCP server, the chat cannot approve, reject or apply a change (people decide, in the console or
with `noetl proposals approve`). Not offered: `wait_ended` (the chat answers at once), `compiled`,
`explain_playbook` and `plan_playbook` (a playbook's structure and schedule are in the console's catalog
and in `noetl plan`). A call the asker's role does not allow, an unknown tool or bad arguments come back
as `{"error": ...}` for the model to read, never as an exception.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control_plane.services.auth import role_allows
from control_plane.services.catalog import PlaybookInvalidError
from engine.errors import NoetlError
from engine.net.validate import validate_text
from policies.model import Actor

if TYPE_CHECKING:
    from agents.chat.service import Diagnose
    from control_plane.services.catalog import CatalogService
    from control_plane.services.executions import ExecutionService
    from control_plane.services.policies import PolicyService

RESULT_CHARS = 6000  # a tool's result as the model reads it: cut beyond this


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, str]  # name -> "type: what it is" (required ones first, marked)
    role: str


SPECS: tuple[ToolSpec, ...] = (
    ToolSpec("list_playbooks", "the registered playbooks (path, name, description)",
             {"prefix": "string, optional: only paths starting with this"}, "viewer"),
    ToolSpec("list_executions", "executions newest first: execution_id, playbook_path, status, created_at",
             {"path": "string, optional: only this playbook's", "status": "string, optional: pending, "
              "running, completed, failed or cancelled", "limit": "integer 1-50, default 10"}, "viewer"),
    ToolSpec("get_execution", "an execution's status and the state, result or error of each step",
             {"execution_id": "string, required"}, "viewer"),
    ToolSpec("list_events", "an execution's events in order (event_id, type, step, error)",
             {"execution_id": "string, required", "after_seq": "integer, default 0",
              "limit": "integer 1-100, default 30"}, "viewer"),
    ToolSpec("why_failed", "the diagnosis of an execution: root-cause step and type, transience, confidence, "
             "evidence with event ids, similar past failures, suggested fixes",
             {"execution_id": "string, required"}, "viewer"),
    ToolSpec("similar_failures", "past failures nearest to an execution's failure, with what happened next",
             {"execution_id": "string, required", "limit": "integer 1-20, default 5"}, "viewer"),
    ToolSpec("search_failures", "past failures nearest to a free text (an error message)",
             {"text": "string, required", "limit": "integer 1-20, default 5"}, "viewer"),
    ToolSpec("get_playbook", "a registered playbook's YAML (the latest version, or `version`)",
             {"path": "string, required", "version": "integer, optional"}, "viewer"),
    ToolSpec("validate_playbook", "check a playbook text without registering it: every problem located",
             {"content": "string, required: the playbook's YAML"}, "viewer"),
    ToolSpec("register_playbook", "register a playbook text as the next version of its path",
             {"content": "string, required: the playbook's YAML"}, "operator"),
    ToolSpec("execute_playbook", "start an execution of a registered playbook (answers at once with its id)",
             {"path": "string, required", "version": "integer, optional", "payload": "object, optional"},
             "operator"),
    ToolSpec("cancel_execution", "cancel a running execution", {"execution_id": "string, required",
                                                                 "reason": "string, optional"}, "operator"),
    ToolSpec("list_proposals", "configuration-change proposals newest first",
             {"state": "string, optional, e.g. proposed", "path": "string, optional"}, "viewer"),
    ToolSpec("get_proposal", "one proposal: change, rationale, risk, state, measured effect, transitions",
             {"proposal_id": "string, required"}, "viewer"),
    ToolSpec("propose_change", "propose a guarded change of one step's runtime overlay, for a person to "
             "approve (operator role)",
             {"path": "string, required", "step": "string, required", "change": "object, required: any of "
              "retry (a task policy rule {when, then: {do: retry, attempts, backoff, delay}}), timeout_s, "
              "pool, prefer, require, max_in_flight", "rationale": "string, required",
              "transience": "string, optional: transient, intermittent or permanent"}, "operator"),
    ToolSpec("propose_rollback", "propose to undo an applied change, for a person to approve",
             {"proposal_id": "string, required: the applied change", "rationale": "string, required"},
             "operator"),
)
BY_NAME = {spec.name: spec for spec in SPECS}


def catalog_text() -> str:
    """The tools as the model's system prompt lists them."""
    lines = []
    for spec in SPECS:
        params = "; ".join(f"{name} ({kind})" for name, kind in spec.parameters.items())
        lines.append(f"- {spec.name}: {spec.description}. Arguments: {params}. Role: {spec.role}.")
    return "\n".join(lines)


class ChatTools:
    """The tools over the services, acting as `actor` with `role`."""

    def __init__(self, executions: ExecutionService, catalog: CatalogService, policies: PolicyService, *,
                 diagnose: Diagnose, similar: Any = None, actor: Actor, role: str) -> None:
        self.executions = executions
        self.catalog = catalog
        self.policies = policies
        self.diagnose = diagnose
        self.similar = similar
        self.actor = actor
        self.role = role
        self.seen_events: set[str] = set()  # event ids a result showed (what the answer may cite)
        self.diagnoses: list[dict[str, Any]] = []
        self.proposals: list[dict[str, Any]] = []
        self.started: list[str] = []  # executions it started

    async def call(self, name: str, arguments: Any) -> dict[str, Any]:
        """The tool's result, or {"error": ...}."""
        spec = BY_NAME.get(name)
        if spec is None:
            return {"error": f"no tool '{name}'; the tools are {', '.join(BY_NAME)} (approving, rejecting "
                             "and rolling back are for people, not for the chat)"}
        if not role_allows(self.role, spec.role):
            return {"error": f"forbidden: {name} needs the {spec.role} role and the asker's token has "
                             f"{self.role}"}
        if not isinstance(arguments, dict):
            return {"error": f"{name}: arguments must be a JSON object"}
        handler: Callable[[dict[str, Any]], Awaitable[Any]] = getattr(self, f"_{name}")
        try:
            return {"result": await handler(arguments)}
        except NoetlError as exc:
            return {"error": exc.message}
        except (KeyError, TypeError, ValueError) as exc:
            return {"error": f"{name}: bad arguments ({type(exc).__name__}: {exc})"}

    @staticmethod
    def as_text(result: dict[str, Any]) -> str:
        text = json.dumps(result, default=str)
        return text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + " ...(cut)"

    async def _list_playbooks(self, args: dict[str, Any]) -> Any:
        return [{"path": p.path, "name": p.name, "description": p.description}
                for p in await self.catalog.list(args.get("prefix"))][:100]

    async def _list_executions(self, args: dict[str, Any]) -> Any:
        page = await self.executions.list(path=args.get("path"), status=args.get("status"),
                                          limit=max(1, min(int(args.get("limit") or 10), 50)))
        return [{"execution_id": e.execution_id, "playbook_path": e.playbook_path, "status": e.status,
                 "created_at": e.created_at, "ended_at": e.ended_at} for e in page.items]

    async def _get_execution(self, args: dict[str, Any]) -> Any:
        return await self.executions.summary(str(args["execution_id"]))

    async def _list_events(self, args: dict[str, Any]) -> Any:
        events = await self.executions.events(str(args["execution_id"]),
                                              after_seq=int(args.get("after_seq") or 0),
                                              limit=max(1, min(int(args.get("limit") or 30), 100)))
        out = []
        for event in events:
            self.seen_events.add(event.event_id)
            error = event.result.error if event.result is not None else None
            out.append({"event_id": event.event_id, "seq": event.seq, "type": event.type, "step": event.step,
                        "at": event.timestamp,
                        "error": {"kind": error.kind, "message": error.message} if error else None})
        return out

    async def _why_failed(self, args: dict[str, Any]) -> Any:
        diagnosis = (await self.diagnose(str(args["execution_id"]))).model_dump(mode="json")
        self.seen_events.update(e["event_id"] for e in diagnosis.get("evidence") or [])
        self.diagnoses.append(diagnosis)
        return diagnosis

    async def _similar_failures(self, args: dict[str, Any]) -> Any:
        if self.similar is None:
            return {"error": "similar-failure search is not available here (no embeddings index)"}
        found = await self.similar.for_execution(str(args["execution_id"]),
                                                 limit=max(1, min(int(args.get("limit") or 5), 20)))
        return [item.to_dict() for item in found]

    async def _search_failures(self, args: dict[str, Any]) -> Any:
        if self.similar is None:
            return {"error": "similar-failure search is not available here (no embeddings index)"}
        found = await self.similar.search(str(args["text"]),
                                          limit=max(1, min(int(args.get("limit") or 5), 20)))
        return [item.to_dict() for item in found]

    async def _get_playbook(self, args: dict[str, Any]) -> Any:
        version = int(args["version"]) if args.get("version") else None
        found = await self.catalog.get(str(args["path"]), version)
        return {"path": found.path, "version": found.version, "content": found.text}

    async def _validate_playbook(self, args: dict[str, Any]) -> Any:
        result = validate_text(str(args["content"]), "<chat>")
        return {"valid": not result.errors, "errors": [d.format() for d in result.errors],
                "warnings": [d.format() for d in result.warnings]}

    async def _register_playbook(self, args: dict[str, Any]) -> Any:
        try:
            registered = await self.catalog.register(str(args["content"]), "<chat>")
        except PlaybookInvalidError as exc:
            return {"registered": False, "errors": [d.format() for d in exc.diagnostics]}
        return {"registered": True, "path": registered.path, "version": registered.version,
                "warnings": [w.format() for w in registered.warnings]}

    async def _execute_playbook(self, args: dict[str, Any]) -> Any:
        payload = args.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise ValueError("payload must be a JSON object")
        version = int(args["version"]) if args.get("version") else None
        execution_id = await self.executions.start(str(args["path"]), payload=payload, version=version)
        self.started.append(execution_id)
        return {"execution_id": execution_id, "status": "started"}

    async def _cancel_execution(self, args: dict[str, Any]) -> Any:
        execution_id = str(args["execution_id"])
        reason = str(args.get("reason") or f"cancelled by {self.actor.name} through the chat")
        await self.executions.cancel(execution_id, reason)
        return {"execution_id": execution_id, "status": "cancelling"}

    async def _get_proposal(self, args: dict[str, Any]) -> Any:
        return (await self.policies.get(str(args["proposal_id"]))).model_dump(mode="json")

    async def _propose_rollback(self, args: dict[str, Any]) -> Any:
        proposal = (await self.policies.propose_rollback(str(args["proposal_id"]), self.actor,
                                                         str(args["rationale"]))).model_dump(
            mode="json", exclude={"transitions", "diagnosis"})
        self.proposals.append(proposal)
        return proposal

    async def _list_proposals(self, args: dict[str, Any]) -> Any:
        found = await self.policies.list(state=args.get("state"), path=args.get("path"), limit=20)
        return [p.model_dump(mode="json", exclude={"transitions", "diagnosis"}) for p in found]

    async def _propose_change(self, args: dict[str, Any]) -> Any:
        draft = {"target": {"path": args["path"], "step": args["step"]}, "change": args["change"],
                 "rationale": args["rationale"]}
        if args.get("transience"):
            draft["transience"] = args["transience"]
        proposal = (await self.policies.propose(draft, self.actor)).model_dump(
            mode="json", exclude={"transitions", "diagnosis"})
        self.proposals.append(proposal)
        return proposal
