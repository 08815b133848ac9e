"""The facts a diagnosis is built on, folded from an execution's events: PURE (no I/O, no clock).

`collect(...)` takes the events, the execution's summary (step results with references resolved) and
the outcomes of the other runs of the same playbook, and returns `Facts`: per step its status, final
error, failed attempts, retries, whether it recovered, duration, result and definition (from the playbook
text carried by `execution.started`). `agents.diagnosis.evidence` reads these inputs from the control
plane's services; `agents.diagnosis.rules` classifies the facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.dsl.load import load_playbook_text
from engine.protocol.events import TERMINAL_EVENTS, Event

_OUTCOMES = {"step.succeeded": "succeeded", "step.failed": "failed", "step.skipped": "skipped"}


@dataclass(frozen=True, slots=True)
class ErrorFact:
    """One error envelope: a failed attempt, a failed loop item, or a step's final error."""

    event_id: str
    kind: str
    message: str
    retryable: bool = False
    code: str | int | None = None
    type: str | None = None
    traceback: str | None = None
    attempt: int | None = None
    loop_index: int | None = None
    run: int | None = None
    task: str | None = None
    http: Mapping[str, Any] | None = None  # meta.http of an http tool: status, method, url, elapsed_ms
    source: str | None = None  # the tool kind
    http_status: int | None = None
    retry_after: float | None = None  # seconds, from the Retry-After header
    pg_code: str | None = None  # the SQLSTATE of a database error

    @property
    def status_code(self) -> int | None:
        """The HTTP status: the error's own, else the response's, else read from `code` (`HTTP_503`)."""
        code = self.code[5:] if isinstance(self.code, str) and self.code.startswith("HTTP_") else self.code
        for value in (self.http_status, (self.http or {}).get("status"), code):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and value.isdigit() and len(value) == 3:
                return int(value)
        return None


@dataclass(slots=True)
class StepFacts:
    name: str
    definition: dict[str, Any] | None = None  # the canonical step of the playbook
    status: str = "not run"  # succeeded | failed | skipped | running | scheduled | not run
    outcome_event_id: str | None = None
    error: ErrorFact | None = None  # the final error of the step
    attempt_failures: list[ErrorFact] = field(default_factory=list)  # every failed attempt or item
    retries: int = 0  # step.retrying events
    recovered: bool = False  # an attempt, item or run failed and a later one of the same step succeeded
    runs_succeeded: int = 0
    runs_failed: int = 0
    items_succeeded: int = 0
    items_failed: int = 0
    attempts: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    duration_ms: float | None = None  # the longest reported run (step.succeeded/failed duration_ms)
    result: Any = None
    result_event_id: str | None = None
    result_by_ref: bool = False  # the result was stored by reference (large)
    warnings: list[str] = field(default_factory=list)
    ctx_writes: dict[str, Any] = field(default_factory=dict)  # "ctx.x" -> value, written by this step
    pool: str | None = None

    @property
    def tasks(self) -> list[dict[str, Any]]:
        tools = (self.definition or {}).get("tool")
        if isinstance(tools, dict):
            return [tools]
        return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []

    @property
    def kinds(self) -> list[str]:
        return [str(t.get("kind")) for t in self.tasks if t.get("kind")]

    @property
    def span_ms(self) -> float | None:
        if self.first_at is None or self.last_at is None:
            return None
        return (self.last_at - self.first_at).total_seconds() * 1000


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How one step ended in another run of the playbook."""

    status: str  # succeeded | failed | skipped
    event_id: str
    error_kind: str | None = None
    recovered: bool = False  # it failed an attempt, then succeeded in that run


@dataclass(frozen=True, slots=True)
class PastRun:
    """Another execution of the same playbook path."""

    execution_id: str
    created_at: datetime
    status: str
    same_conditions: bool  # the same playbook version and the same payload as the diagnosed run
    steps: Mapping[str, StepOutcome] = field(default_factory=dict)


@dataclass(slots=True)
class Facts:
    execution_id: str
    status: str
    path: str | None = None
    version: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    started_event_id: str | None = None
    terminal_event_id: str | None = None
    execution_error: dict[str, Any] | None = None
    failed_step: str | None = None
    steps: dict[str, StepFacts] = field(default_factory=dict)
    step_order: list[str] = field(default_factory=list)  # as the playbook lists them
    playbook: dict[str, Any] | None = None  # canonical (short forms expanded)
    duration_ms: float | None = None
    history: list[PastRun] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    trigger: dict[str, Any] | None = None  # the trigger and firing that started it (docs/triggers.md)

    def step(self, name: str) -> StepFacts:
        return self.steps.setdefault(name, StepFacts(name=name))


# ------------------------------------------------------------------------------------------ folding
def _error_of(event: Event) -> ErrorFact | None:
    envelope = event.result
    if envelope is None or envelope.error is None:
        return None
    error = envelope.error
    meta = envelope.meta.model_dump()
    http = meta.get("http") if isinstance(meta.get("http"), dict) else None
    return ErrorFact(event_id=event.event_id, kind=error.kind, message=error.message,
                     retryable=error.retryable, code=error.code, type=error.type, traceback=error.traceback,
                     attempt=event.attempt, loop_index=event.loop_index, run=event.run,
                     task=event.payload.get("task"), http=http, source=error.source,
                     http_status=error.http_status, retry_after=error.retry_after, pg_code=error.pg_code)


def canonical_playbook(text: str | None) -> dict[str, Any] | None:
    """The playbook text as canonical data (short forms expanded), or None when it cannot be read."""
    if not text:
        return None
    try:
        canonical = load_playbook_text(text).canonical
    except Exception:  # never raise on user data
        return None
    return canonical if isinstance(canonical, dict) else None


def step_definitions(playbook: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}
    for step in (playbook or {}).get("workflow") or []:
        if isinstance(step, dict) and isinstance(step.get("step"), str):
            steps[step["step"]] = step
    return steps


def collect(execution_id: str, events: Sequence[Event], *, status: str | None = None,
            summary: Mapping[str, Any] | None = None, path: str | None = None, version: int | None = None,
            payload: Mapping[str, Any] | None = None, created_at: datetime | None = None,
            history: Iterable[PastRun] = ()) -> Facts:
    """Fold one execution's events (and its summary, for resolved results) into `Facts`."""
    facts = Facts(execution_id=execution_id, status=status or "unknown", path=path, version=version,
                  payload=dict(payload or {}), created_at=created_at, history=list(history))
    started_at: datetime | None = None
    ended_at: datetime | None = None
    playbook_text: str | None = None
    for event in events:
        if event.type == "execution.started":
            facts.started_event_id = event.event_id
            started_at = event.timestamp
            playbook_text = event.payload.get("playbook") or playbook_text
            facts.path = facts.path or event.payload.get("path")
            facts.version = facts.version or event.payload.get("version")
            trigger = event.payload.get("trigger")
            facts.trigger = trigger if isinstance(trigger, dict) else facts.trigger
            continue
        if event.type in TERMINAL_EVENTS:
            facts.terminal_event_id = event.event_id
            ended_at = event.timestamp
            facts.status = event.type.split(".", 1)[1]
            error = event.payload.get("error")
            if isinstance(error, dict):
                facts.execution_error = error
                facts.failed_step = error.get("step") or facts.failed_step
            continue
        if not event.step:
            continue
        _fold_step(facts.step(event.step), event)
    facts.playbook = canonical_playbook(playbook_text)
    if playbook_text is None:
        facts.gaps.append("the playbook text is not in the execution.started event: step definitions "
                          "(inputs, templates, retry rules) could not be read")
    elif facts.playbook is None:
        facts.gaps.append("the playbook text could not be parsed: step definitions were not read")
    definitions = step_definitions(facts.playbook)
    facts.step_order = list(definitions) + [n for n in facts.steps if n not in definitions]
    for name, definition in definitions.items():
        facts.step(name).definition = definition
    for name, entry in ((summary or {}).get("steps") or {}).items():  # resolved results (references)
        step = facts.step(name)
        if entry.get("status") == "succeeded" and step.result_by_ref:
            step.result = entry.get("result")
            step.result_by_ref = False
    if facts.failed_step is None:
        failed = [s for s in facts.steps.values() if s.status == "failed"]
        if failed:
            first = min(failed, key=lambda s: s.last_at.timestamp() if s.last_at else float("inf"))
            facts.failed_step = first.name
    if started_at is not None and ended_at is not None:
        facts.duration_ms = (ended_at - started_at).total_seconds() * 1000
    return facts


def _fold_step(step: StepFacts, event: Event) -> None:
    step.first_at = step.first_at or event.timestamp
    step.last_at = event.timestamp
    step.pool = event.pool or step.pool
    if event.attempt:
        step.attempts = max(step.attempts, event.attempt)
    if event.type == "step.started" and step.status in ("not run", "scheduled"):
        step.status = "running"
    elif event.type == "step.scheduled" and step.status == "not run":
        step.status = "scheduled"
    elif event.type == "loop.started":
        step.status = "running"
    elif event.type == "step.retrying":
        step.retries += 1
    elif event.type == "task.attempt.failed":
        error = _error_of(event)
        if error is not None:
            step.attempt_failures.append(error)
    elif event.type in ("loop.item.succeeded", "loop.item.failed"):
        if event.type == "loop.item.succeeded":
            step.items_succeeded += 1
            if (event.attempt or 1) > 1:
                step.recovered = True
        else:
            step.items_failed += 1
            error = _error_of(event)
            if error is not None and not any(f.loop_index == error.loop_index and f.attempt == error.attempt
                                             for f in step.attempt_failures):
                step.attempt_failures.append(error)
    elif event.type in _OUTCOMES and event.loop_index is None:
        step.status = _OUTCOMES[event.type]
        step.outcome_event_id = event.event_id
        if event.duration_ms is not None:
            step.duration_ms = max(step.duration_ms or 0.0, event.duration_ms)
        for warning in event.payload.get("warnings") or []:
            if warning not in step.warnings:
                step.warnings.append(str(warning))
        if event.type == "step.succeeded":
            step.runs_succeeded += 1
            step.error = None
            if step.attempt_failures or step.runs_failed:
                step.recovered = True
            envelope = event.result
            if envelope is not None:
                step.result = envelope.data
                step.result_by_ref = envelope.ref is not None
                step.result_event_id = event.event_id
            for key, value in (event.payload.get("ctx") or {}).items():
                step.ctx_writes[key] = value
        elif event.type == "step.failed":
            step.runs_failed += 1
            step.error = _error_of(event)


def outcomes(events: Iterable[Event]) -> dict[str, StepOutcome]:
    """Each step's last outcome in another run (for the history of the same steps)."""
    found: dict[str, StepOutcome] = {}
    failed_attempts: set[str] = set()
    for event in events:
        if not event.step:
            continue
        if event.type in ("task.attempt.failed", "loop.item.failed"):
            failed_attempts.add(event.step)
        if event.type in _OUTCOMES and event.loop_index is None:
            kind = event.result.error.kind if event.result and event.result.error else None
            found[event.step] = StepOutcome(
                status=_OUTCOMES[event.type], event_id=event.event_id, error_kind=kind,
                recovered=event.type == "step.succeeded" and event.step in failed_attempts)
    return found
