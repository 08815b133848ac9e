"""Events -> documents to embed (pure: no I/O, no clock). Three kinds:

- `failure`: one per failed step outcome (`step.failed`), per failed loop item (`loop.item.failed`;
  items of one loop run failing with the same error collapse into one document with a `count`), and per
  failed task attempt that was retried (`task.attempt.failed` followed by `step.retrying`; `retried: true`).
  Cancellations are not failures and get none;
- `execution`: one per execution: its outcome, each step's status, the error;
- `playbook`: one per catalog (path, version): its name, description and steps with their tool kinds.

Ids are uuid5 of the source (`failure:<event_id>`, `execution:<execution_id>`, `playbook:<path>@<version>`),
so indexing the same execution again replaces the same points.

Nothing of a step's input or result values gets in: inputs appear as their shape (keys and value types,
templates as "template"), errors as kind, type, code and the (already scrubbed) message, truncated. The
failure payload: execution_id, playbook_path, playbook_version, step, task, tool_kind, error_kind,
error_type, error_code, error_message, input_shape, event_id, event_type, occurred_at, attempts,
loop_index, run, count, retried (the work was tried again: a retry, more attempts, a later run),
step_succeeded (the step, or the loop item, succeeded later in the same execution), status (of the
execution).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.dsl.load import load_playbook_text
from engine.protocol.events import TERMINAL_EVENTS, Event
from engine.runtime.summary import summarize

KINDS = ("failure", "execution", "playbook")
NAMESPACE = uuid.UUID("6f0e4a52-3c1d-5b7e-9a4f-6e6f65746c00")  # NoETL's documents
MESSAGE_MAX = 500  # characters of an error message kept in the payload
TEXT_MESSAGE_MAX = 300  # ... and in the text embedded (the model reads ~256 word pieces)
SHAPE_DEPTH = 3
SHAPE_KEYS = 30
_FAILED = frozenset({"step.failed", "loop.item.failed"})
_SUCCEEDED = frozenset({"step.succeeded", "loop.item.succeeded"})
_TOOL_SKIP = frozenset({"kind", "name", "desc", "spec", "set", "output"})
_LONG_ID = re.compile(r"\b(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,})\b",
                      re.IGNORECASE)
_SPACE = re.compile(r"\s+")


class ExecutionSource(Protocol):
    """One execution as read from the log (control_plane.services.indexing.EndedExecution has these)."""

    @property
    def execution_id(self) -> str: ...
    @property
    def playbook_path(self) -> str: ...
    @property
    def playbook_version(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def playbook_text(self) -> str: ...
    @property
    def events(self) -> Sequence[Event]: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def parent_execution_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Document:
    id: str  # a uuid5 of the source: the same source always gives the same point
    kind: str  # failure | execution | playbook
    text: str  # what is embedded
    payload: dict[str, Any] = field(default_factory=dict)  # metadata stored beside the vector


def document_id(kind: str, source: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{source}"))


def shape(value: Any, depth: int = SHAPE_DEPTH) -> Any:
    """The shape of a value: dict keys kept, every other value replaced by its type name."""
    if isinstance(value, Mapping):
        if depth <= 0:
            return "object"
        items = sorted(value.items(), key=lambda kv: str(kv[0]))[:SHAPE_KEYS]
        return {str(k): shape(v, depth - 1) for k, v in items}
    if isinstance(value, list | tuple):
        if not value:
            return []
        return [shape(value[0], depth - 1)] if depth > 0 else "array"
    if isinstance(value, str):
        return "template" if "{{" in value or "{%" in value else "str"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def shape_keys(value: Any, prefix: str = "") -> list[str]:
    """`{"a": {"b": "int"}, "c": "str"}` -> ["a.b:int", "c:str"] (for the text)."""
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, inner in value.items():
            out.extend(shape_keys(inner, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        return [f"{prefix.rstrip('.')}:list"]
    return [f"{prefix.rstrip('.')}:{value}"] if prefix else []


def truncate(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def normalize_message(message: str) -> str:
    """For embedding: one line, ids (uuids, long hex) as <id>, cut to TEXT_MESSAGE_MAX characters."""
    return truncate(_SPACE.sub(" ", _LONG_ID.sub("<id>", str(message))).strip(), TEXT_MESSAGE_MAX)


# ------------------------------------------------------------------------------------------ playbooks
@dataclass(frozen=True, slots=True)
class _Task:
    name: str
    kind: str
    shape: Any


@dataclass(frozen=True, slots=True)
class _Step:
    name: str
    tasks: tuple[_Task, ...]
    input_shape: Any
    loop: bool

    @property
    def tool_kind(self) -> str:
        kinds = list(dict.fromkeys(t.kind for t in self.tasks))
        return kinds[0] if len(kinds) == 1 else ",".join(kinds) or "unknown"

    def task(self, name: str | None) -> _Task | None:
        return next((t for t in self.tasks if t.name == name), None) if name else None


@dataclass(frozen=True, slots=True)
class _Playbook:
    name: str | None
    description: str | None
    tags: tuple[str, ...]
    steps: dict[str, _Step]


@functools.lru_cache(maxsize=64)
def _playbook(text: str) -> _Playbook | None:
    """What the documents need of a playbook text (None when it does not parse)."""
    if not text:
        return None
    loaded = load_playbook_text(text)
    playbook = loaded.playbook
    if playbook is None:
        return None
    steps: dict[str, _Step] = {}
    for step in playbook.workflow:
        tasks = []
        for index, tool in enumerate(step.tool):
            config = tool.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
            tasks.append(_Task(step.task_name(index), tool.kind,
                               shape({k: v for k, v in config.items() if k not in _TOOL_SKIP})))
        steps[step.step] = _Step(step.step, tuple(tasks), shape(step.input or {}), step.loop is not None)
    meta = playbook.metadata
    return _Playbook(meta.name, meta.description, tuple(meta.tags), steps)


def playbook_document(path: str, version: int, text: str) -> Document:
    parsed = _playbook(text)
    payload: dict[str, Any] = {"playbook_path": path, "playbook_version": version}
    if parsed is None:
        body = f"playbook {path} version {version} (it does not parse)"
        return Document(document_id("playbook", f"{path}@{version}"), "playbook", body, payload)
    steps = [f"{s.name} ({s.tool_kind}{', loop' if s.loop else ''})" for s in parsed.steps.values()]
    lines = [f"playbook {path} version {version}: {parsed.name or path}"]
    if parsed.description:
        lines.append(truncate(parsed.description, 300))
    if parsed.tags:
        lines.append("tags: " + ", ".join(parsed.tags))
    lines.append("steps: " + "; ".join(steps))
    payload.update(name=parsed.name, steps=list(parsed.steps),
                   tool_kinds=sorted({t.kind for s in parsed.steps.values() for t in s.tasks}),
                   tags=list(parsed.tags))
    return Document(document_id("playbook", f"{path}@{version}"), "playbook", "\n".join(lines),
                    _compact(payload))


# ------------------------------------------------------------------------------------------- failures
def _error_of(event: Event) -> dict[str, Any]:
    error = event.result.error if event.result is not None else None
    if error is None:
        return {"kind": "internal", "message": "the step failed without an error description"}
    return error.model_dump(exclude_none=True)


def failure_documents(source: ExecutionSource) -> list[Document]:
    events = list(source.events)
    parsed = _playbook(source.playbook_text)
    retrying = {(e.command_id, (e.payload or {}).get("task"), (e.attempt or 0) - 1)
                for e in events if e.type == "step.retrying"}
    documents: list[Document] = []
    collapsed: dict[tuple[Any, ...], int] = {}  # a loop run's identical item failures -> index in documents
    payload_shape = shape(_started_payload(events))
    for position, event in enumerate(events):
        if event.step is None:
            continue
        task: str | None = None
        if event.type == "task.attempt.failed":
            task = (event.payload or {}).get("task")
            if (event.command_id, task, event.attempt or 0) not in retrying:
                continue  # an attempt that was not retried is reported by the step's outcome
        elif event.type not in _FAILED:
            continue
        error = _error_of(event)
        if error.get("kind") == "cancelled":
            continue
        later = events[position + 1:]
        message = str(error.get("message") or "")
        if event.type == "loop.item.failed":
            key = (event.step, event.run, error.get("kind"), normalize_message(message))
            if key in collapsed:
                document = documents[collapsed[key]]
                document.payload["count"] = int(document.payload.get("count", 1)) + 1
                continue
            collapsed[key] = len(documents)
        step = parsed.steps.get(event.step) if parsed is not None else None
        tool = step.task(task) if step is not None else None
        tool_kind = tool.kind if tool is not None else (step.tool_kind if step is not None else "unknown")
        input_shape: dict[str, Any] = {}
        if step is not None and step.input_shape:
            input_shape["step"] = step.input_shape
        tools = [tool] if tool is not None else list(step.tasks) if step is not None else []
        for t in tools:
            if t.shape:
                input_shape[t.name if len(tools) > 1 else "tool"] = t.shape
        if payload_shape:
            input_shape["payload"] = payload_shape
        attempts = event.attempt or (event.result.meta.attempt if event.result is not None else 1)
        succeeded = _succeeded_later(event, later)
        retried = event.type == "task.attempt.failed" or attempts > 1 or _ran_again(event, later)
        payload = {
            "execution_id": source.execution_id, "playbook_path": source.playbook_path,
            "playbook_version": source.playbook_version, "step": event.step, "task": task,
            "tool_kind": tool_kind, "error_kind": error.get("kind"), "error_type": error.get("type"),
            "error_code": None if error.get("code") is None else str(error.get("code")),
            "error_message": truncate(message, MESSAGE_MAX), "input_shape": input_shape,
            "event_id": event.event_id, "event_type": event.type, "occurred_at": event.timestamp.isoformat(),
            "attempts": attempts, "loop_index": event.loop_index, "run": event.run,
            "retried": retried, "step_succeeded": succeeded, "status": source.status,
            "parent_execution_id": source.parent_execution_id,
        }
        documents.append(Document(document_id("failure", event.event_id), "failure",
                                  _failure_text(payload, input_shape, message), _compact(payload)))
    return documents


def _failure_text(payload: Mapping[str, Any], input_shape: Mapping[str, Any], message: str) -> str:
    what = "a retried attempt of " if payload["event_type"] == "task.attempt.failed" else ""
    item = " (a loop item)" if payload["event_type"] == "loop.item.failed" else ""
    error = str(payload["error_kind"])
    if payload.get("error_type"):
        error += f" {payload['error_type']}"
    if payload.get("error_code"):
        error += f" code {payload['error_code']}"
    lines = [f"{what}{payload['tool_kind']} step '{payload['step']}'{item} failed: {error}: "
             f"{normalize_message(message)}"]
    keys = shape_keys({k: v for k, v in input_shape.items() if k != "payload"})
    if keys:
        lines.append("input: " + ", ".join(keys[:SHAPE_KEYS]))
    lines.append(f"playbook {payload['playbook_path']}")
    return "\n".join(lines)


def _started_payload(events: Iterable[Event]) -> Any:
    for event in events:
        if event.type == "execution.started":
            return (event.payload or {}).get("payload") or {}
    return {}


def _succeeded_later(event: Event, later: Sequence[Event]) -> bool:
    for other in later:
        if other.step != event.step:
            continue
        if event.type == "task.attempt.failed" and other.command_id == event.command_id \
                and other.type in _SUCCEEDED:
            return True
        if event.type == "loop.item.failed":
            if other.type == "loop.item.succeeded" and other.loop_index == event.loop_index:
                return True
        elif other.type == "step.succeeded" and other.loop_index is None:
            return True
    return False


def _ran_again(event: Event, later: Sequence[Event]) -> bool:
    """A later run of the same step (a cycle or a retried dispatch) was scheduled."""
    return any(o.step == event.step and o.type in ("step.scheduled", "loop.started")
               and (o.run or 0) > (event.run or 0) for o in later)


# ----------------------------------------------------------------------------------------- executions
def execution_document(source: ExecutionSource) -> Document:
    events = list(source.events)
    summary = summarize(source.execution_id, events)
    status = source.status if summary["status"] in ("running", "unknown") else summary["status"]
    parts: list[str] = []
    failed: list[str] = []
    for name, step in summary["steps"].items():
        text = f"{name} {step['status']}"
        if step.get("error"):
            message = normalize_message(step["error"].get("message", ""))[:120]
            text += f" ({step['error'].get('kind')}: {message})"
        if step["status"] == "failed":
            failed.append(name)
        parts.append(text)
    error = summary.get("error") if isinstance(summary.get("error"), dict) else None
    started = next((e.timestamp for e in events if e.type == "execution.started"), None)
    ended = next((e.timestamp for e in events if e.type in TERMINAL_EVENTS), None)
    lines = [f"execution of playbook {source.playbook_path} version {source.playbook_version}: {status}"]
    if parts:
        lines.append("steps: " + "; ".join(parts))
    if error:
        lines.append(f"error: {error.get('kind')}: {normalize_message(str(error.get('message', '')))}")
    payload = {
        "execution_id": source.execution_id, "playbook_path": source.playbook_path,
        "playbook_version": source.playbook_version, "status": status, "failed_steps": failed,
        "steps": len(summary["steps"]), "error_kind": error.get("kind") if error else None,
        "error_message": truncate(str(error.get("message", "")), MESSAGE_MAX) if error else None,
        "started_at": started.isoformat() if started else None,
        "occurred_at": when.isoformat() if (when := ended or source.ended_at or started) else None,
        "duration_ms": round((ended - started).total_seconds() * 1000, 3) if started and ended else None,
        "parent_execution_id": source.parent_execution_id,
    }
    return Document(document_id("execution", source.execution_id), "execution", "\n".join(lines),
                    _compact(payload))


def documents_of(source: ExecutionSource) -> list[Document]:
    """Every document of one execution: its failures, its summary and its playbook's version."""
    return [*failure_documents(source), execution_document(source),
            playbook_document(source.playbook_path, source.playbook_version, source.playbook_text)]


def _compact(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if v is not None}
