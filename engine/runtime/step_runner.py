"""The worker's half of a step: run its task pipeline with policy rules (spec section 7) and report.

Input: a RunStep command. Output: progress events (attempt failures, retries) through `report`, and
the outcome event (step.succeeded/failed, or loop.item.succeeded/failed for one loop item).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.bus.nats_ops import NatsOpError
from engine.bus.result_objects import ResultObjects
from engine.dsl.context import RenderContext, build_context
from engine.dsl.model import Rule, RuleThen
from engine.dsl.results import wrap_result
from engine.dsl.templates import TemplateRenderer, single_expression, to_native
from engine.errors import TemplateError
from engine.net.contracts import check_expects, check_returns
from engine.net.state import StepResult
from engine.protocol.commands import RunStep
from engine.protocol.events import Event, EventType, random_event_id
from engine.protocol.ids import template_value
from engine.protocol.outcomes import event_key, outcome_type
from engine.protocol.results import ResultEnvelope, fold_body_alias
from engine.protocol.tracecontext import parse_traceparent, random_span_id
from engine.runtime.keychain import KeychainError, KeychainResolver
from engine.runtime.spans import AttributeValue, SpanRecord, SpanSink
from engine.tools.artifacts import encode, externalize, json_size
from engine.tools.base import Credential, CredentialResolver, NoCredentials, Tool, ToolCall
from engine.tools.redact import needs_redaction, redact

log = logging.getLogger(__name__)
_CONTINUE, _FAIL = RuleThen(do="continue"), RuleThen(do="fail")  # the default actions (read, never changed)

# keys of a task that are about the pipeline, not the tool's configuration
PIPELINE_KEYS = ("kind", "name", "spec", "set", "output", "desc", "input", "assert")
NOT_RENDERED = {"python": ("code",)}
NAMED_KINDS = ("nats",)  # kinds whose `name` is also configuration (an object's name), as for workbook
Report = Callable[[Event], Awaitable[None]]
# a step that ends sooner sends step.started with its outcome: one message and one commit, not two
STARTED_DELAY_S = 0.1


class ToolSource(Protocol):
    def get(self, kind: str) -> Tool: ...


@dataclass
class WorkerIdentity:
    worker: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:8]}")
    pool: str = "default"


@dataclass
class _Pipeline:
    """The running state of one pipeline (a step's tasks, or a workbook task's)."""

    results: dict[str, Any] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)  # unscoped task-level set names
    ctx_writes: dict[str, Any] = field(default_factory=dict)
    iter_vars: dict[str, Any] | None = None
    prev: Any = None
    attempts: int = 0
    runs: dict[str, int] = field(default_factory=dict)  # task name -> times started (a jump runs it again)
    warnings: list[str] = field(default_factory=list)
    credentials: CredentialResolver = field(default_factory=NoCredentials)
    keychain: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    key_prefix: str = ""  # a cursor loop's row: its events' keys are its own (one claimer runs many)


class _RecordingCredentials:
    """Hands out credentials and remembers their values, so that no event can carry them."""

    def __init__(self, base: CredentialResolver) -> None:
        self.base = base
        self.secrets: set[str] = set()

    async def get(self, name: str) -> Credential:
        credential = await self.base.get(name)
        for value in credential.data.values():
            if isinstance(value, (str, int)) and not isinstance(value, bool) and len(str(value)) >= 4:
                self.secrets.add(str(value))
        return credential

    def _result_needs(self, result: ResultEnvelope | None) -> bool:
        """Whether masking would change the envelope: its parts walked as they are (the data is JSON
        values already), not dumped first: a step's result can be large, and it rarely holds a secret."""
        if result is None:
            return False
        meta = result.meta  # its fields' names name no secret, and only worker and pool are text
        parts: list[Any] = [result.data, meta.model_extra or {}]
        if self.secrets:
            parts.append((meta.worker or "", meta.pool or ""))
        if result.error is not None:
            parts.append(result.error.model_dump())
        if result.ref is not None:
            parts.append(result.ref.model_dump())
        return needs_redaction(parts, self.secrets)

    def add(self, value: Any) -> None:
        if isinstance(value, (str, int)) and not isinstance(value, bool) and len(str(value)) >= 4:
            self.secrets.add(str(value))

    def scrub(self, event: Event) -> Event:
        """The event with every secret value and secret-named field masked (a copy only if needed)."""
        if event.result is None and not event.payload:
            return event
        if not self._result_needs(event.result) and not needs_redaction(event.payload, self.secrets):
            return event
        result = event.result.model_dump(mode="json", by_alias=True) if event.result else None
        return event.model_copy(update={
            "result": (ResultEnvelope.model_validate(redact(result, self.secrets))
                       if result is not None else None),
            "payload": redact(event.payload, self.secrets)})


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What a run of a command ends with: the outcome event, after the events not yet reported."""

    event: Event
    before: tuple[Event, ...] = ()

    @property
    def events(self) -> list[Event]:
        return [*self.before, self.event]


class _StartedNotice:
    """`step.started`, reported after a delay unless the step is over by then (or reports progress)."""

    def __init__(self, event: Event, send: Report, delay_s: float) -> None:
        self.event = event
        self._send = send
        self._sent: asyncio.Future[None] | None = None
        self._taken = False  # by the caller, to send it itself: never sent from here
        self._timer = asyncio.get_running_loop().call_later(delay_s, self.send_now) if delay_s > 0 else None
        if self._timer is None:
            self.send_now()

    def send_now(self) -> asyncio.Future[None]:
        """Send it now unless sent (or taken) already; await the result to know it was published."""
        if self._sent is None and self._taken:
            self._sent = _done()
        if self._sent is None:
            if self._timer is not None:
                self._timer.cancel()
            self._sent = asyncio.ensure_future(self._send(self.event))
        return self._sent

    def take(self) -> Event | None:
        """The event when it was not sent yet (the caller sends it); None when it is on its way."""
        if self._sent is not None or self._taken:
            return None
        if self._timer is not None:
            self._timer.cancel()
        self._taken = True
        return self.event


class StepRunner:
    """Runs RunStep commands against the tools; one instance per worker process."""

    def __init__(self, tools: ToolSource, *, credentials: CredentialResolver | None = None,
                 identity: WorkerIdentity | None = None, renderer: TemplateRenderer | None = None,
                 resolve_ref: Callable[[dict[str, Any]], Any] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 work_dir: Path | None = None, inline_max_bytes: int = 65536,
                 keychain: KeychainResolver | None = None, started_delay_s: float = STARTED_DELAY_S,
                 objects: ResultObjects | None = None, tracer: SpanSink | None = None) -> None:
        self.tools = tools
        self.tracer = tracer  # where tool call spans go (engine.runtime.tracing); None: no tracing
        self.objects = objects
        self.started_delay_s = started_delay_s
        self.credentials = credentials or NoCredentials()
        self.identity = identity or WorkerIdentity()
        self.renderer = renderer or TemplateRenderer()
        self.resolve_ref = resolve_ref
        self.sleep = sleep
        self.work_dir = work_dir
        self.keychain = keychain or KeychainResolver(self.credentials)
        self.inline_max_bytes = inline_max_bytes
        self._dirs: dict[str, Path] = {}  # execution directories made (insertion-ordered, bounded)

    def _render(self, value: Any, context: Mapping[str, Any], where: str, pipe: _Pipeline, *,
                condition: bool = False) -> Any:
        rendered = self.renderer.render(value, context, where=where, condition=condition)
        for warning in rendered.warnings:
            message = f"{where}: {warning}"
            if message not in pipe.warnings:
                pipe.warnings.append(message)
        return rendered.value

    # ------------------------------------------------------------------ events
    def _event(self, cmd: RunStep, type_: EventType, *, key: str, result: ResultEnvelope | None = None,
               attempt: int | None = None, duration_ms: float | None = None,
               payload: dict[str, Any] | None = None, loop_index: int | None = None) -> Event:
        return Event(
            event_id=random_event_id(), idempotency_key=event_key(cmd.command_id, key),
            execution_id=cmd.execution_id, type=type_, step=cmd.step, command_id=cmd.command_id,
            run=cmd.run, attempt=attempt, loop_index=cmd.loop_index if loop_index is None else loop_index,
            worker=self.identity.worker, pool=self.identity.pool, duration_ms=duration_ms, result=result,
            payload=payload or {})

    def cancelled_outcome(self, cmd: RunStep, reason: str) -> StepOutcome:
        """The outcome of a command cancelled before (or while) it ran."""
        envelope = ResultEnvelope.fail("cancelled", f"step '{cmd.step}' was cancelled: {reason}",
                                       retryable=False, worker=self.identity.worker,
                                       pool=self.identity.pool)
        type_ = outcome_type(False, cmd.loop_index, claimer=cmd.cursor is not None)
        return StepOutcome(self._event(cmd, type_, key="outcome", result=envelope, attempt=1))

    # ------------------------------------------------------------------ entry
    async def run(self, cmd: RunStep, report: Report, *, delivery: int = 1) -> StepOutcome:
        """Run the command to its outcome; progress goes to `report`; the outcome is returned.

        `delivery` counts how often the bus handed out this command (more than 1 after a worker died).
        `step.started` is reported once the step has run for `started_delay_s`; a step that ends sooner
        returns it with the outcome (`StepOutcome.before`), to be sent in the same message.
        """
        if cmd.cursor is not None:
            return await self._claimer(cmd, report, delivery)
        started = time.perf_counter()
        self._work_dir_of(cmd)
        recorder = _RecordingCredentials(self.credentials)
        notice = _StartedNotice(self._event(
            cmd, "step.started", key=f"started:{delivery}", attempt=1,
            payload={"delivery": delivery} if delivery > 1 else None),
            lambda event: report(recorder.scrub(event)), self.started_delay_s)

        async def scrubbed(event: Event) -> None:  # progress keeps its order: step.started first
            await notice.send_now()
            await report(recorder.scrub(event))

        pipe = _Pipeline(iter_vars=dict(cmd.context.iter or {}) if cmd.loop_index is not None
                         else None, credentials=recorder)
        try:
            envelope = await self._secrets(cmd, pipe, recorder)
            if envelope is None:
                step_input, envelope = self._step_input(cmd, pipe)
            if envelope is None:
                envelope = await self._pipeline(cmd, cmd.tasks, pipe, scrubbed, step_input)
        except asyncio.CancelledError:
            envelope = ResultEnvelope.fail("cancelled", f"step '{cmd.step}' was cancelled")
        if envelope.status == "ok" and self.work_dir is not None and envelope.ref is None:
            envelope = await self._store_large(cmd, envelope, pipe)
        unsent = notice.take()
        if unsent is None:
            await notice.send_now()
        duration = (time.perf_counter() - started) * 1000
        envelope = self._stamped(cmd, envelope, pipe, duration)
        type_ = outcome_type(envelope.status == "ok", cmd.loop_index)
        payload: dict[str, Any] = {}
        if pipe.ctx_writes:
            payload["ctx"] = pipe.ctx_writes
        if pipe.warnings:
            payload["warnings"] = pipe.warnings
        outcome = recorder.scrub(self._event(cmd, type_, key="outcome", result=envelope,
                                             attempt=max(pipe.attempts, 1), duration_ms=duration,
                                             payload=payload))
        # scrubbed last: secrets resolved while the step ran are masked in its start event too
        return StepOutcome(outcome, (recorder.scrub(unsent),) if unsent is not None else ())

    def _work_dir_of(self, cmd: RunStep) -> Path | None:
        """The execution's directory under `work_dir`, made once (None without a work_dir)."""
        if self.work_dir is None:
            return None
        made = self._dirs.get(cmd.execution_id)
        if made is None:
            made = self.work_dir / cmd.execution_id
            made.mkdir(parents=True, exist_ok=True)
            self._dirs[cmd.execution_id] = made
            while len(self._dirs) > 1024:
                self._dirs.pop(next(iter(self._dirs)))
        return made

    def _stamped(self, cmd: RunStep, envelope: ResultEnvelope, pipe: _Pipeline, duration: float, *,
                 task_results: bool = True) -> ResultEnvelope:
        """The envelope with the run's duration, attempts, worker and pool (and task results) in meta."""
        meta = dict(envelope.meta.model_extra or {})
        meta.update(duration_ms=round(duration, 3), attempt=max(pipe.attempts, 1),
                    worker=self.identity.worker, pool=self.identity.pool)
        if task_results and len(cmd.tasks) > 1:
            # an http result's body once: handles read `body` as `data` (engine/dsl/results.py)
            meta["task_results"] = {name: fold_body_alias(value) for name, value in pipe.results.items()}
        return envelope.model_copy(update={"meta": envelope.meta.model_validate(meta)})

    # ------------------------------------------------------------------ cursor loops (spec 6.1)
    async def _claimer(self, cmd: RunStep, report: Report, delivery: int) -> StepOutcome:
        """A cursor loop's claimer: claim rows, run the pipeline on each (each row's outcome is reported
        at once, as a loop item), claim again; stop when a claim returns no row, fails, or is cancelled.

        Every event of this run has keys of its own (`d<delivery>:<run>:...`): a claimer that replaces
        a dead one (the bus delivered its command again) claims new rows, and its rows must not be
        taken for the dead one's."""
        started = time.perf_counter()
        self._work_dir_of(cmd)
        assert cmd.cursor is not None
        claimer, max_rows = cmd.cursor.claimer, max(cmd.cursor.max_rows, 1)
        run_id = uuid.uuid4().hex[:8]  # this run of the claimer (a command re-sent may run twice at once)
        tag = f"d{delivery}:{run_id}"
        recorder = _RecordingCredentials(self.credentials)
        notice = _StartedNotice(self._event(
            cmd, "step.started", key=f"started:{delivery}", attempt=1,
            payload={"delivery": delivery, "cursor": {"claimer": claimer}} if delivery > 1
            else {"cursor": {"claimer": claimer}}),
            lambda event: report(recorder.scrub(event)), self.started_delay_s)

        async def scrubbed(event: Event) -> None:
            await notice.send_now()
            await report(recorder.scrub(event))

        base = _Pipeline(credentials=recorder)
        end = await self._secrets(cmd, base, recorder)
        claims = rows = 0
        reason = "drained"
        try:
            while end is None:
                claimed, end = await self._claim(cmd, base, claims, max_rows)
                if end is not None or not claimed:
                    break
                at = time.time()
                for number, row in enumerate(claimed):
                    bound = {cmd.iterator or "item": row, "_index": rows, "_first": rows == 0,
                             "_claimer": claimer, "_claim": claims}
                    pipe = _Pipeline(iter_vars=bound,
                                     credentials=recorder, keychain=base.keychain, tokens=base.tokens,
                                     key_prefix=f"{tag}:{rows}:")
                    began = time.perf_counter()
                    step_input, envelope = self._step_input(cmd, pipe)
                    if envelope is None:
                        envelope = await self._pipeline(cmd, cmd.tasks, pipe, scrubbed, step_input)
                    if envelope.status == "ok" and self.work_dir is not None and envelope.ref is None:
                        envelope = await self._store_large(cmd, envelope, pipe)
                    duration = (time.perf_counter() - began) * 1000
                    envelope = self._stamped(cmd, envelope, pipe, duration)
                    payload: dict[str, Any] = {"cursor": {
                        "claimer": claimer, "delivery": delivery, "run": run_id, "claim": claims,
                        "row": number, "at": at}}
                    if pipe.ctx_writes:
                        payload["ctx"] = pipe.ctx_writes
                        ctx = dict(cmd.context.ctx)
                        ctx.update({k[4:]: v for k, v in pipe.ctx_writes.items()})
                        cmd = cmd.model_copy(update={"context": cmd.context.model_copy(update={"ctx": ctx})})
                    if pipe.warnings:
                        payload["warnings"] = pipe.warnings
                    ok = envelope.status == "ok"
                    await scrubbed(self._event(
                        cmd, "loop.item.succeeded" if ok else "loop.item.failed", key=f"{tag}:row:{rows}",
                        result=envelope, attempt=max(pipe.attempts, 1), duration_ms=duration,
                        payload=payload, loop_index=rows))
                    rows += 1
                claims += 1
        except asyncio.CancelledError:
            end = ResultEnvelope.fail("cancelled", f"claimer {claimer} of step '{cmd.step}' was cancelled",
                                      retryable=False)
        if end is not None:
            reason = "cancelled" if end.error is not None and end.error.kind == "cancelled" else "failed"
        unsent = notice.take()
        if unsent is None:
            await notice.send_now()
        envelope = end or ResultEnvelope.ok({"claims": claims, "rows": rows})
        envelope = self._stamped(cmd, envelope, base, (time.perf_counter() - started) * 1000,
                                 task_results=False)
        payload = {"cursor": {"claimer": claimer, "delivery": delivery, "run": run_id,
                              "claims": claims, "rows": rows, "reason": reason}}
        if base.warnings:
            payload["warnings"] = base.warnings
        outcome = recorder.scrub(self._event(cmd, "loop.claimer.stopped", key="outcome", result=envelope,
                                             attempt=1, duration_ms=envelope.meta.duration_ms,
                                             payload=payload))
        return StepOutcome(outcome, (recorder.scrub(unsent),) if unsent is not None else ())

    async def _claim(self, cmd: RunStep, pipe: _Pipeline, claims: int, max_rows: int
                     ) -> tuple[list[Any], ResultEnvelope | None]:
        """The rows of the next claim (at most `max_rows`), or the claim's classified error. A claim
        that fails with a retryable error (a dropped connection, a deadlock) is tried up to 3 times."""
        cursor = cmd.cursor
        assert cursor is not None
        claimer = cursor.claimer
        where = f"step '{cmd.step}' cursor claim"  # warnings name the step; fire names it in errors
        what = f"the claim of claimer {claimer}"
        context = self._context(cmd, pipe, {})
        context["__frame_max_rows"] = max_rows  # NoETL's one engine variable of a claim (spec 16)
        try:
            where_to = {"auth": cursor.auth, "connection_string": cursor.connection_string}
            config = {key: self._render(value, context, where, pipe)
                      for key, value in where_to.items() if value is not None}
            config["command"] = self._render(cursor.claim, context, where, pipe)
        except TemplateError as exc:
            return [], ResultEnvelope.fail(exc.kind, f"{what}: {exc}", retryable=False)
        kind = cursor.kind
        try:
            tool = self.tools.get(kind)
        except Exception as exc:
            return [], ResultEnvelope.fail("validation", f"{what}: {exc}", retryable=False)
        envelope = ResultEnvelope.ok(None)
        for attempt in range(1, 4):
            call = ToolCall(kind=kind, config=config, credentials=pipe.credentials, timeout_s=cmd.timeout_s,
                            execution_id=cmd.execution_id, step=cmd.step, task="claim", attempt=attempt)
            try:
                envelope = (await tool.run(call)).with_source(kind)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a tool bug must not take the worker down
                envelope = ResultEnvelope.fail("internal", f"the {kind} tool crashed: "
                                                           f"{type(exc).__name__}: {exc}", source=kind)
            if envelope.status == "ok" or not (envelope.error and envelope.error.retryable) or attempt == 3:
                break
            await self.sleep(0.2 * 2 ** (attempt - 1))
        if envelope.status != "ok" and envelope.error is not None:
            message = f"{what} failed: {envelope.error.message}"
            return [], envelope.model_copy(update={"error": envelope.error.model_copy(
                update={"message": message})})
        data = envelope.data
        rows = data.get("rows") if isinstance(data, dict) else data if isinstance(data, list) else None
        if not isinstance(rows, list):
            return [], ResultEnvelope.fail("validation", f"{what} returned no row set; end it with a "
                                                         "SELECT or a RETURNING clause", retryable=False)
        if len(rows) > max_rows:
            pipe.warnings.append(f"{where}: the claim returned {len(rows)} rows, more than frame.max_rows="
                                 f"{max_rows}; the first {max_rows} were run, the others are left to the "
                                 "claim's own reclaiming (LIMIT {{ __frame_max_rows }})")
            rows = rows[:max_rows]
        return rows, None

    async def _store_large(self, cmd: RunStep, envelope: ResultEnvelope, pipe: _Pipeline) -> ResultEnvelope:
        """Large results go by reference (spec 9); `output` hints choose what stays inline and where the
        rest is kept: files by default, the NATS object store for `kv` / `object` (spec 16)."""
        assert self.work_dir is not None
        hints = dict(cmd.output or {})
        last_task = cmd.tasks[-1] if cmd.tasks else {}
        hints.update(last_task.get("output") or {})
        threshold = hints.get("inline_max_bytes", self.inline_max_bytes)
        store = (hints.get("store") or {}).get("kind", "auto")
        if store == "memory":
            return envelope
        if store == "disk":
            threshold = 0
        selected = hints.get("select") or hints.get("output_select")
        if isinstance(selected, dict):  # {strategy: size_threshold, threshold_kb}
            threshold, selected = int(float(selected.get("threshold_kb", 0)) * 1024), None
        data = envelope.data
        if not selected and threshold > 0 and ((not data and threshold >= 8) or json_size(data) <= threshold):
            return envelope  # small (an empty or false value is at most 5 bytes of JSON): stays inline
        if store in ("kv", "object") and self.objects is None:
            pipe.warnings.append(f"step '{cmd.step}': output.store.kind '{store}' needs a worker connected "
                                 "to NATS; the result was stored as a file")
        if store in ("kv", "object") and self.objects is not None:
            inline, ref = None, None
            if (selected and isinstance(data, dict)) or json_size(data) > threshold:
                encoded = encode(data)
                try:
                    uri = await self.objects.put(cmd.execution_id, cmd.step, encoded.payload)
                except NatsOpError as exc:
                    return ResultEnvelope.fail(exc.kind, f"step '{cmd.step}': its result could not be stored "
                                                         f"in the NATS object store: {exc}",
                                               retryable=exc.retryable)
                ref = encoded.ref(uri, data)
        else:
            inline, ref = externalize(data, self.work_dir / cmd.execution_id,
                                      0 if selected and isinstance(data, dict) else threshold)
        if ref is None:
            return envelope
        if selected and isinstance(data, dict):
            inline = {key: data[key] for key in selected if key in data}
        return envelope.model_copy(update={"data": inline, "ref": ref})

    async def _secrets(self, cmd: RunStep, pipe: _Pipeline,
                       recorder: _RecordingCredentials) -> ResultEnvelope | None:
        """Resolve the keychain and token() calls; an error envelope when that fails."""
        if not cmd.keychain and not _mentions(cmd.tasks, "token("):
            return None
        context = self._context(cmd, pipe, cmd.input)
        resolved: dict[str, Any] = {}
        context["keychain"] = resolved  # later entries may read earlier ones

        def render_owned(owner: Mapping[str, Any], value: Any) -> Any:
            """An inherited shared entry renders in the context of the execution that declared it."""
            owned = build_context(workload=owner.get("workload") or {},
                                  execution_id=template_value(str(owner.get("execution_id"))))
            owned["keychain"] = resolved
            return self._render(value, owned, "keychain", pipe)

        try:
            pipe.keychain = await self.keychain.resolve(
                cmd.execution_id, cmd.keychain,
                lambda value: self._render(value, context, "keychain", pipe), recorder.add, resolved,
                render_owned)
            pipe.tokens = await self.keychain.tokens(cmd.execution_id, json.dumps(cmd.tasks), recorder.add)
        except KeychainError as exc:
            return ResultEnvelope.fail(exc.kind, str(exc), retryable=exc.retryable)
        except TemplateError as exc:
            return ResultEnvelope.fail(exc.kind, f"keychain: {exc}", retryable=False)
        return None

    def _step_input(self, cmd: RunStep, pipe: _Pipeline) -> tuple[Mapping[str, Any], ResultEnvelope | None]:
        """The step input; a loop item's is rendered here, with the item bound (spec 2)."""
        if not cmd.render_input:
            return cmd.input, None
        try:
            context = self._context(cmd, pipe, {})
            return self._render(cmd.input, context, f"step '{cmd.step}' input", pipe), None
        except TemplateError as exc:
            return {}, ResultEnvelope.fail(exc.kind, str(exc), retryable=False)

    # ------------------------------------------------------------------ context
    def _context(self, cmd: RunStep, pipe: _Pipeline, step_input: Mapping[str, Any],
                 output: dict[str, Any] | None = None) -> RenderContext:
        raw = cmd.context
        results: dict[str, Any] = {}
        for name, entry in raw.results.items():  # as fire sent them (StepResult fields)
            item_refs = {int(i): ref for i, ref in (entry.item_refs or {}).items()} or None
            results[name] = StepResult(
                data=entry.data, ref=entry.ref, columns=entry.columns, statement_count=entry.statement_count,
                task_results=entry.task_results, stats=entry.stats, item_refs=item_refs,
            ).handle(self.resolve_ref)
        for name, value in pipe.results.items():
            results[name] = wrap_result(value)
        ctx = dict(raw.ctx)
        ctx.update({k[4:]: v for k, v in pipe.ctx_writes.items()})
        context = build_context(
            workload=raw.workload, ctx=ctx, step_names=raw.step_names,
            results=results, arc_args={**raw.arc_args, **pipe.local},
            iterator=cmd.iterator, iter_vars=pipe.iter_vars, input=step_input, output=output,
            execution_id=template_value(cmd.execution_id), keychain=pipe.keychain)
        context["token"] = functools.partial(_token, pipe.tokens)
        context["_prev"] = pipe.prev
        context["_attempt"] = pipe.attempts
        context["results"] = dict(pipe.results)
        return context

    # ------------------------------------------------------------------ pipelines
    async def _pipeline(self, cmd: RunStep, tasks: list[dict[str, Any]], pipe: _Pipeline,
                        report: Report, step_input: Mapping[str, Any]) -> ResultEnvelope:
        names = [t.get("name") or (cmd.step if len(tasks) == 1 else f"task_{i}")
                 for i, t in enumerate(tasks)]
        index = 0
        iterations = 0
        last: ResultEnvelope | None = None
        while index < len(tasks):
            iterations += 1
            if iterations > cmd.max_iterations:
                return ResultEnvelope.fail(
                    "validation", f"step '{cmd.step}': the pipeline ran more than "
                                  f"spec.max_iterations={cmd.max_iterations} tasks (a jump loop?); "
                                  "raise max_iterations or fix the jump condition", retryable=False)
            task, name = tasks[index], names[index]
            envelope, action = await self._task(cmd, task, name, pipe, report, step_input)
            last = envelope
            pipe.results[name] = envelope.data
            pipe.prev = envelope.data
            if action.do == "fail":
                if envelope.status == "ok":
                    return ResultEnvelope.fail("validation", f"task '{name}' of step '{cmd.step}' "
                                                             "was failed by a policy rule",
                                               data=envelope.data, retryable=False)
                return envelope
            if action.do == "break":
                return envelope
            if action.do == "jump":
                index = names.index(action.to) if action.to in names else len(tasks)
                continue
            index += 1
        return last if last is not None else ResultEnvelope.ok({})

    async def _task(self, cmd: RunStep, task: dict[str, Any], name: str, pipe: _Pipeline,
                    report: Report, step_input: Mapping[str, Any]) -> tuple[ResultEnvelope, RuleThen]:
        rules = [Rule.model_validate(r) for r in ((task.get("spec") or {}).get("policy") or {})
                 .get("rules", [])]
        run = pipe.runs[name] = pipe.runs.get(name, 0) + 1
        tag = name if run == 1 else f"{name}#{run}"  # each run of a task has its own event keys
        attempt = 0
        while True:
            attempt += 1
            pipe.attempts = max(pipe.attempts, attempt)
            envelope = await self._attempt(cmd, task, name, pipe, step_input, attempt)
            context: MutableMapping[str, Any] = {}
            if rules or task.get("set"):  # else nothing reads the context: the default action
                context = self._context(cmd, pipe, step_input, _output_view(envelope))
                context["_attempt"] = attempt
            try:
                action = self._choose(rules, context, envelope, pipe)
            except TemplateError as exc:
                return ResultEnvelope.fail(exc.kind, str(exc), retryable=False), RuleThen(do="fail")
            if envelope.status == "error":
                await report(self._event(cmd, "task.attempt.failed",
                                         key=f"{pipe.key_prefix}{tag}:{attempt}:failed",
                                         result=envelope, attempt=attempt, payload={"task": name}))
            if action.do == "retry" and attempt < (action.attempts or 3):
                delay = _backoff(action, attempt)
                await report(self._event(cmd, "step.retrying", key=f"{pipe.key_prefix}{tag}:{attempt}:retry",
                                         attempt=attempt + 1,
                                         payload={"task": name, "delay_s": round(delay, 3)}))
                await self.sleep(delay)
                continue
            if action.do == "retry":  # attempts used up: the last result stands
                action = _CONTINUE if envelope.status == "ok" else _FAIL
            if action.do in ("continue", "break", "jump") and envelope.status == "ok":
                try:
                    self._apply_set(task.get("set"), context, pipe, envelope.data)
                    self._apply_set(action.set, context, pipe, envelope.data)
                except TemplateError as exc:
                    return ResultEnvelope.fail(exc.kind, str(exc), retryable=False), RuleThen(do="fail")
            elif action.do in ("continue", "jump") and action.set:
                self._apply_set(action.set, context, pipe)
            return envelope, action

    def _choose(self, rules: list[Rule], context: Mapping[str, Any], envelope: ResultEnvelope,
                pipe: _Pipeline) -> RuleThen:
        for rule in rules:
            if rule.else_ is not None:
                return rule.else_.then
            when = rule.when
            holds = when if isinstance(when, bool) else bool(
                self._render(when, context, "policy rule", pipe, condition=True))
            if holds:
                assert rule.then is not None
                return rule.then
        return _CONTINUE if envelope.status == "ok" else _FAIL

    def _apply_set(self, writes: Mapping[str, Any] | None, context: Mapping[str, Any],
                   pipe: _Pipeline, result: Any = None) -> None:
        for key, template in (writes or {}).items():
            if isinstance(template, str) and (single_expression(template) or "").strip() == "output":
                value = result  # `"{{ output }}"` stores the task's result, not its envelope (spec 7)
            else:
                value = self._render(template, context, "task set", pipe)
            scope, _, rest = key.partition(".")
            if scope == "ctx" and rest:
                pipe.ctx_writes[key] = value
            elif scope == "iter" and rest:
                if pipe.iter_vars is None:
                    pipe.iter_vars = {}
                pipe.iter_vars[rest] = value
            else:
                pipe.local[key] = value

    async def _attempt(self, cmd: RunStep, task: dict[str, Any], name: str, pipe: _Pipeline,
                       step_input: Mapping[str, Any], attempt: int) -> ResultEnvelope:
        kind = str(task.get("kind"))
        built: list[RenderContext] = []

        def context() -> RenderContext:  # built once, and only when something reads it
            if not built:
                built.append(self._context(cmd, pipe, step_input))
            return built[0]

        skip = NOT_RENDERED.get(kind, ())
        raw_config = {k: v for k, v in task.items() if k not in PIPELINE_KEYS}
        where = f"step '{cmd.step}' task '{name}'"
        try:
            config = {k: (v if k in skip else self._render(v, context(), where, pipe))
                      for k, v in raw_config.items()}
            tool_input = {}
            if cmd.iterator and pipe.iter_vars and cmd.iterator in pipe.iter_vars:
                # the loop element reaches code by its bare name too (spec 6), below any input
                tool_input[cmd.iterator] = pipe.iter_vars[cmd.iterator]
                tool_input["loop_index"] = pipe.iter_vars.get("_index")
            tool_input.update(step_input)
            if task.get("input"):
                tool_input.update(self._render(task["input"], context(), where, pipe) or {})
            if kind in NAMED_KINDS and task.get("name") is not None:
                config["name"] = self._render(task["name"], context(), where, pipe)
        except TemplateError as exc:
            return ResultEnvelope.fail(exc.kind, str(exc), retryable=False)
        breach = check_expects(task, tool_input, step=cmd.step, task=name)
        if breach is not None:  # the contract (spec 3): the tool does not run
            return breach.with_source(kind)
        if kind == "workbook":
            envelope = await self._workbook(cmd, {**config, "name": task.get("name")}, pipe, tool_input)
            return check_returns(task, envelope, step=cmd.step, task=name) or envelope
        timeout = _min_timeout(cmd.timeout_s, config.get("timeout"))
        call = ToolCall(kind=kind, config=config, input=tool_input, context=_PlainView(context),
                        credentials=pipe.credentials, timeout_s=timeout, execution_id=cmd.execution_id,
                        step=cmd.step, task=name, attempt=attempt, loop_index=cmd.loop_index,
                        work_dir=self._work_dir_of(cmd))
        try:
            tool = self.tools.get(kind)
        except Exception as exc:  # an unknown or uninstalled tool is the error
            return ResultEnvelope.fail("validation", str(exc), retryable=False)
        started = time.perf_counter()
        started_ns = time.time_ns() if self.tracer is not None else 0
        try:
            if timeout is not None:
                envelope = await asyncio.wait_for(tool.run(call), timeout + 5.0)
            else:
                envelope = await tool.run(call)
        except TimeoutError:
            envelope = ResultEnvelope.fail("timeout", f"{where} did not finish within {timeout} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool bug must not take the worker down
            log.exception("tool %s crashed", kind, extra={"execution_id": cmd.execution_id,
                                                           "step": cmd.step})
            envelope = ResultEnvelope.fail("internal", f"{where}: the {kind} tool crashed: "
                                                       f"{type(exc).__name__}: {exc}")
        envelope = check_returns(task, envelope, step=cmd.step, task=name) or envelope
        if self.tracer is not None and cmd.traceparent:
            self._tool_span(self.tracer, cmd, kind, name, attempt, started_ns, envelope)
        if "duration_ms" in envelope.meta.model_fields_set and envelope.meta.attempt == attempt:
            return envelope.with_source(kind)  # stamped by the tool (engine.tools.support.guarded)
        meta = dict(envelope.meta.model_extra or {})
        meta.update(duration_ms=round((time.perf_counter() - started) * 1000, 3), attempt=attempt)
        return envelope.with_source(kind).model_copy(update={"meta": envelope.meta.model_validate(meta)})

    def _tool_span(self, tracer: SpanSink, cmd: RunStep, kind: str, name: str, attempt: int, started_ns: int,
                   envelope: ResultEnvelope) -> None:
        """A tool call's span, a child of the command's (its `traceparent`): ids, names and the outcome's
        status and error kind only, never the call's input or result."""
        parent = parse_traceparent(cmd.traceparent)
        if parent is None or not parent[2]:
            return
        attributes: dict[str, AttributeValue] = {
            "noetl.execution.id": cmd.execution_id, "noetl.step": cmd.step, "noetl.task": name,
            "noetl.tool.kind": kind, "noetl.attempt": attempt, "noetl.command.id": cmd.command_id,
            "noetl.worker": self.identity.worker, "noetl.pool": self.identity.pool,
            "noetl.status": envelope.status}
        if cmd.loop_index is not None:
            attributes["noetl.loop.index"] = cmd.loop_index
        if cmd.playbook_path:
            attributes["noetl.playbook.path"] = cmd.playbook_path
        error = None
        if envelope.error is not None:
            error = attributes["noetl.error.kind"] = envelope.error.kind
        tracer.emit(SpanRecord(parent[0], random_span_id(), parent[1], f"tool {kind} {name}", started_ns,
                               time.time_ns(), attributes, error))

    async def _workbook(self, cmd: RunStep, config: Mapping[str, Any], pipe: _Pipeline,
                        tool_input: Mapping[str, Any]) -> ResultEnvelope:
        target = str(config.get("name"))
        tasks = cmd.workbook.get(target)
        if tasks is None:
            return ResultEnvelope.fail("validation", f"workbook task '{target}' is not defined",
                                       retryable=False)
        inner = _Pipeline(iter_vars=pipe.iter_vars, warnings=pipe.warnings, credentials=pipe.credentials)
        merged_input = dict(tool_input)
        contract = cmd.workbook_contracts.get(target)  # the workbook task's own `assert` (spec 3)
        breach = check_expects(contract, merged_input, step=cmd.step, workbook=target)
        if breach is not None:
            return breach
        nested = cmd.model_copy(update={"step": f"{cmd.step}", "tasks": tasks})
        envelope = await self._pipeline(nested, [_with_input_defaults(t, merged_input) for t in tasks],
                                        inner, _no_report, merged_input)
        pipe.ctx_writes.update(inner.ctx_writes)
        return check_returns(contract, envelope, step=cmd.step, workbook=target) or envelope


def _mentions(value: Any, text: str) -> bool:
    """Whether `text` is in a string of `value` (JSON values: keys and strings), as `text in
    json.dumps(value)` tells for any `text` JSON writes unescaped, without writing the JSON."""
    if isinstance(value, str):
        return text in value
    if isinstance(value, dict):
        for key, item in value.items():
            if (isinstance(key, str) and text in key) or _mentions(item, text):
                return True
    elif isinstance(value, list):
        for item in value:
            if _mentions(item, text):
                return True
    return False


def _done() -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


async def _no_report(event: Event) -> None:
    return None


def _with_input_defaults(task: dict[str, Any], call_input: Mapping[str, Any]) -> dict[str, Any]:
    """A workbook task's own `input` gives defaults; the caller's input wins."""
    given = task.get("input")
    defaults = given if isinstance(given, dict) else {}
    merged = {**defaults, **call_input}
    return {**task, "input": merged}


def _output_view(envelope: ResultEnvelope) -> dict[str, Any]:
    meta = envelope.meta.model_dump()
    data = envelope.data
    out: dict[str, Any] = {"status": envelope.status, "data": wrap_result(data),  # data.x reads its body
                           "error": envelope.error.model_dump() if envelope.error else None,
                           "meta": meta}
    http = meta.get("http")
    out["http"] = dict(http) if isinstance(http, dict) else {}
    if isinstance(data, dict) and "status_code" in data:  # an http result, also on an error (spec 7)
        out["http"].update(status=data["status_code"], headers=data.get("headers"), url=data.get("url"),
                           elapsed_ms=data.get("elapsed_ms"))
    out["http"].setdefault("status", None)
    return out


def _backoff(action: RuleThen, attempt: int) -> float:
    if action.backoff == "exponential":
        delay = action.delay * (action.multiplier ** (attempt - 1))
    elif action.backoff == "linear":
        delay = action.delay * attempt
    else:
        delay = action.delay
    if action.max_delay is not None:
        delay = min(delay, action.max_delay)
    if action.jitter and delay > 0 and action.backoff != "fixed":  # fixed: the same delay every time
        delay *= random.uniform(0.8, 1.2)  # jitter, not security
    return delay


def _min_timeout(step_timeout: float | None, tool_timeout: Any) -> float | None:
    values = [t for t in (step_timeout, tool_timeout) if isinstance(t, (int, float)) and t > 0]
    if isinstance(tool_timeout, str):
        from engine.dsl.model import parse_duration

        try:
            parsed = parse_duration(tool_timeout)
            if isinstance(parsed, float):
                values.append(parsed)
        except ValueError:
            pass
    return min(values) if values else None


class _PlainView(Mapping[str, Any]):
    """The render context as a tool sees it: plain data, without the keychain and token(); built and
    converted when read (only the python tool reads it, and most steps run other tools)."""

    __slots__ = ("_context",)
    _HIDDEN = frozenset({"keychain", "token"})

    def __init__(self, context: Callable[[], Mapping[str, Any]]) -> None:
        self._context = context

    def __getitem__(self, key: str) -> Any:
        if key in self._HIDDEN:
            raise KeyError(key)
        return to_native(self._context()[key])

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._context() if k not in self._HIDDEN)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _token(tokens: Mapping[str, str], name: str) -> str:
    if name not in tokens:
        raise TemplateError(f"token('{name}') was not prepared: write the name as a literal string",
                            kind="validation", expression=f"token('{name}')")
    return tokens[name]
