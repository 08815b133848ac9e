"""`fire(net, state, event) -> Decision`: the engine's transition function (spec sections 4-6, 15).

No I/O, no clock, no randomness: the same events in the same order give the same state, the same
derived events (with the same ids) and the same commands. The orchestrator publishes the commands and
records the input events with the derived ones (in order, through its commit pipeline: an event counts
once it is in the log); replay folds the recorded input events through this function again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.dsl.context import RenderContext, build_context, merge_payload
from engine.dsl.model import PlaybookTool, Step
from engine.dsl.templates import TemplateRenderer
from engine.errors import TemplateError
from engine.net.contracts import check_expects, check_returns
from engine.net.cursor import CursorLoops
from engine.net.keychain import inherited_by_child, visible_entries
from engine.net.net import Net
from engine.net.state import Dispatch, ExecutionState, LoopProgress, StepRecord, StepResult
from engine.protocol.commands import CancelStep, ResultEntry, RunStep, StartChild, StepContext
from engine.protocol.events import Event, EventType, derived_id
from engine.protocol.ids import as_int, child_execution_id, template_value
from engine.protocol.results import ResultEnvelope, ToolError, engine_error
from engine.protocol.sql_result import loop_items

DEFAULT_POOL = "default"
INLINE_MAX_BYTES = 65536  # larger values do not travel inside derived events (spec 9)


@dataclass
class Decision:
    events: list[Event] = field(default_factory=list)
    commands: list[RunStep | CancelStep | StartChild] = field(default_factory=list)


@dataclass(frozen=True)
class FireEnv:
    """What firing needs besides the net and the state: all deterministic."""

    renderer: TemplateRenderer = field(default_factory=TemplateRenderer)
    resolve_ref: Callable[[dict[str, Any]], Any] | None = None
    pool_of: Callable[[Step], str] = lambda step: (step.spec.resources.pool
                                                   if step.spec.resources and step.spec.resources.pool
                                                   else DEFAULT_POOL)
    playbook_path: str | None = None
    keychain: tuple[dict[str, Any], ...] = ()  # the shared entries inherited from a parent (spec 10)


def command_id(execution_id: str, step: str, run: int, loop_index: int | str | None) -> str:
    """A command's id; a cursor loop's claimer is `claimer-<k>` in place of a loop index."""
    return derived_id("cmd", execution_id, step, run, "" if loop_index is None else loop_index)


class _Handles(Mapping[str, Any]):
    """Finished steps' results as templates see them, wrapped when first read (spec section 5)."""

    __slots__ = ("_resolve_ref", "_steps", "_wrapped")

    def __init__(self, steps: Mapping[str, StepRecord], resolve_ref: Callable[[dict[str, Any]], Any] | None
                 ) -> None:
        self._steps = steps
        self._resolve_ref = resolve_ref
        self._wrapped: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._wrapped:
            return self._wrapped[name]
        record = self._steps.get(name)
        if record is None or record.result is None:
            raise KeyError(name)
        handle = self._wrapped[name] = record.result.handle(self._resolve_ref)
        return handle

    def __contains__(self, name: object) -> bool:
        record = self._steps.get(name) if isinstance(name, str) else None
        return record is not None and record.result is not None

    def __iter__(self) -> Iterator[str]:
        return (name for name, record in self._steps.items() if record.result is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Firing(CursorLoops):
    def __init__(self, net: Net, state: ExecutionState, cause: Event, env: FireEnv) -> None:
        self.net = net
        self.state = state
        self.cause = cause
        self.env = env
        self.out = Decision()
        self.new_warnings: list[str] = []
        self._handles: _Handles | None = None  # step results as templates see them (cached)
        self.execution_id = template_value(state.execution_id)  # a number in templates (spec 13)

    # ------------------------------------------------------------------ emitting
    def emit(self, type_: EventType, *, step: str | None = None, result: ResultEnvelope | None = None,
             **fields: Any) -> None:
        n = len(self.out.events)
        event_id = derived_id(self.state.execution_id, self.cause.event_id, n, type_)
        payload = dict(fields.pop("payload", {}))
        if self.new_warnings:
            payload["warnings"] = self.new_warnings
            self.new_warnings = []
        self.out.events.append(Event(
            event_id=event_id, idempotency_key=event_id, execution_id=self.state.execution_id,
            type=type_, derived=True, step=step, result=result, timestamp=self.cause.timestamp,
            payload=payload, **fields))

    # ------------------------------------------------------------------ context
    def context(self, *, arc_args: Mapping[str, Any] | None = None, event: dict[str, Any] | None = None,
                iterator: str | None = None, iter_vars: Mapping[str, Any] | None = None,
                input: Mapping[str, Any] | None = None) -> RenderContext:
        if self._handles is None:
            self._handles = _Handles(self.state.steps, self.env.resolve_ref)
        results = self._handles
        return build_context(workload=self.state.workload, ctx=self.state.ctx,
                             step_names=self.net.transitions,
                             results=results, arc_args=arc_args, iterator=iterator, iter_vars=iter_vars,
                             input=input, event=event, execution_id=self.execution_id)

    def render(self, value: Any, context: Mapping[str, Any], where: str, *, condition: bool = False) -> Any:
        rendered = self.env.renderer.render(value, context, where=where, condition=condition)
        for warning in rendered.warnings:
            self.state.warnings.append(f"{where}: {warning}")
            self.new_warnings.append(f"{where}: {warning}")
        return rendered.value

    # ------------------------------------------------------------------ entry points
    def started(self) -> None:
        state = self.state
        if state.started:
            return
        state.started = True
        payload = self.cause.payload
        raw = merge_payload(self.net.playbook.workload, payload.get("payload") or {})
        base = {"execution_id": self.execution_id, "payload": payload.get("payload") or {},
                "job": {"uuid": self.execution_id, "execution_id": self.execution_id,
                        "id": self.execution_id}}
        try:
            state.workload = self.render(raw, {**raw, **base, "workload": raw}, "workload")
        except TemplateError as exc:
            state.workload = raw
            self.fail_execution(engine_error(exc.kind, str(exc)))
            return
        self.dispatch(self.net.entry, {})

    def cancel_requested(self) -> None:
        if self.state.status != "running" or self.state.cancelling:
            return
        self.state.cancelling = True
        reason = str(self.cause.payload.get("reason") or "cancelled on request")
        if self.state.error is None:
            self.state.error = engine_error("timeout" if self.cause.payload.get("timeout") else "cancelled",
                                        reason)
        self.cancel_pending(reason)

    def outcome(self) -> None:
        event = self.cause
        if event.type[5:9] == "item" and "cursor" in event.payload:
            self.cursor_item()  # a row of a cursor loop: its claimer goes on
            return
        dispatch = self.state.pending.get(event.command_id or "")
        if dispatch is None:
            return  # a duplicate or a late report of a cancelled command: already settled
        del self.state.pending[dispatch.command_id]
        if dispatch.claimer is not None:
            self.claimer_stopped(dispatch)
            return
        envelope = event.result or ResultEnvelope.fail("internal", "the worker sent no result")
        ok = event.type in ("step.succeeded", "loop.item.succeeded") and envelope.status == "ok"
        record = self.state.record(dispatch.step)
        record.attempts = max(record.attempts, envelope.meta.attempt)
        reported = True
        if ok and self.net.transition(dispatch.step).command.child:
            breach = self.child_contract(dispatch.step, envelope)
            if breach is not None:  # a playbook call's result breaks `assert.returns` (spec 3)
                envelope, ok, reported = breach, False, False
        if dispatch.loop_index is not None:
            self.loop_item_done(dispatch, ok, envelope)
        else:
            self.apply_ctx_writes(dispatch.step, event.payload.get("ctx") or {})
            self.step_done(dispatch.step, ok, _step_result(envelope), envelope.error, reported=reported)

    def child_contract(self, name: str, envelope: ResultEnvelope) -> ResultEnvelope | None:
        """The breach of a playbook call's `assert.returns` by the child's result, or None."""
        step = self.net.playbook.step(name)
        task = step.tool[0].model_dump(by_alias=True, exclude_none=True, include={"assert_"})
        if not task:
            return None
        data = _step_result(envelope).handle(self.env.resolve_ref) if envelope.ref else envelope.data
        return check_returns(task, envelope, step=name, task=step.task_name(0), data=data)

    def progress(self) -> None:
        event = self.cause
        if event.command_id and event.command_id not in self.state.pending:
            return  # a copy that came after the outcome (a report carries its step's progress again)
        if event.step and event.attempt:
            record = self.state.record(event.step)
            record.attempts = max(record.attempts, event.attempt)
            if record.status == "scheduled":
                record.status = "running"

    # ------------------------------------------------------------------ dispatching
    def dispatch(self, name: str, arc_args: dict[str, Any]) -> None:
        state = self.state
        if state.cancelling or state.unhandled and name != self.net.final:
            return
        step = self.net.playbook.step(name)
        record = state.record(name)
        record.runs += 1
        run = record.runs
        if run > step.spec.max_runs:
            self.step_done(name, False, None, engine_error(
                "validation", f"step '{name}' would run more than spec.max_runs={step.spec.max_runs} "
                              "times in one execution; raise max_runs or fix the cycle's exit condition"))
            return
        context = self.context(arc_args=arc_args)
        if step.spec.policy.admit is not None and not self.admitted(step, context):
            record.status = "skipped"
            self.emit("step.skipped", step=name, run=run, payload={"reason": "admit rules"})
            return
        if step.loop is not None and step.loop.cursor is not None:  # claimers on workers (spec 6.1)
            limit = self.loop_limit(step, context)
            if limit is not False:
                self.start_cursor(step, run, arc_args, dict(step.input or {}), limit)
            return
        if step.loop is not None:  # the input is rendered per item, with the iterator bound (spec 2)
            self.start_loop(step, run, arc_args, dict(step.input or {}), context)
            return
        try:
            step_input = self.render(step.input or {}, context, f"step '{name}' input")
        except TemplateError as exc:
            self.step_done(name, False, None, engine_error(exc.kind, str(exc)))
            return
        record.status = "scheduled"
        self.issue(step, run, None, arc_args, step_input, None)

    def admitted(self, step: Step, context: Mapping[str, Any]) -> bool:
        assert step.spec.policy.admit is not None
        for rule in step.spec.policy.admit.rules:
            then = rule.then if rule.else_ is None else rule.else_.then
            if rule.else_ is None:
                try:
                    holds = bool(self.render(rule.when, context, f"step '{step.step}' admit", condition=True))
                except TemplateError:
                    holds = False
                if not holds:
                    continue
            assert then is not None
            allow = then.allow
            if isinstance(allow, str):
                try:
                    allow = bool(self.render(allow, context, f"step '{step.step}' admit"))
                except TemplateError:
                    allow = False
            return bool(allow)
        return True

    def issue(self, step: Step, run: int, loop_index: int | None, arc_args: dict[str, Any],
              step_input: dict[str, Any], item: Any, *, claimer: int | None = None) -> str:
        """Send the step's command (or a loop item's, or a cursor loop's claimer); its id."""
        transition = self.net.transition(step.step)
        cursor = None
        if claimer is None:
            cid = command_id(self.state.execution_id, step.step, run, loop_index)
            self.state.pending[cid] = Dispatch(cid, step.step, run, loop_index)
        else:
            assert transition.loop is not None and transition.loop.cursor is not None
            cursor = transition.loop.cursor.command(claimer)
            cid = command_id(self.state.execution_id, step.step, run, f"claimer-{claimer}")
            self.state.pending[cid] = Dispatch(cid, step.step, run, None, claimer)
        pool = self.env.pool_of(step)
        parts = transition.command
        results = {name: ResultEntry(
                       data=rec.result.data, ref=rec.result.ref, columns=rec.result.columns,
                       statement_count=rec.result.statement_count, task_results=rec.result.task_results,
                       stats=rec.result.stats,
                       item_refs={str(i): r for i, r in (rec.result.item_refs or {}).items()} or None)
                   for name in sorted(transition.reads)
                   if (rec := self.state.steps.get(name)) is not None and rec.result is not None}
        iterator = step.loop.iterator if step.loop else None
        iter_vars = None
        if loop_index is not None and step.loop is not None:
            loop = self.state.loops[step.step]
            iter_vars = {step.loop.iterator: item, "_index": loop_index, "_first": loop_index == 0,
                         "_last": loop_index == len(loop.items) - 1}
        if parts.child:
            self.start_child(step, cid, run, loop_index, arc_args, step_input, iter_vars)
            return cid
        context = StepContext(
            workload=self.state.workload, ctx=dict(self.state.ctx), results=results,
            step_names=list(parts.step_names), arc_args=arc_args, iter=iter_vars)
        self.out.commands.append(RunStep(
            command_id=cid, execution_id=self.state.execution_id, step=step.step, run=run,
            loop_index=loop_index, pool=pool, tasks=list(parts.tasks), input=step_input,
            render_input=(loop_index is not None or cursor is not None) and bool(step_input),
            context=context, iterator=iterator, timeout_s=parts.timeout_s,
            max_iterations=parts.max_iterations, playbook_path=self.env.playbook_path,
            workbook={name: list(tasks) for name, tasks in parts.workbook.items()},
            workbook_contracts={name: dict(c) for name, c in parts.workbook_contracts.items()},
            output=dict(parts.output) if parts.output is not None else None,
            keychain=visible_entries(parts.keychain, self.env.keychain), cursor=cursor))
        if cursor is None:
            self.emit("step.scheduled", step=step.step, run=run, loop_index=loop_index, command_id=cid,
                      pool=pool)
        else:
            self.emit("step.scheduled", step=step.step, run=run, command_id=cid, pool=pool,
                      payload={"cursor": {"claimer": claimer}})
        return cid

    def start_child(self, step: Step, cid: str, run: int, loop_index: int | None,
                    arc_args: dict[str, Any], step_input: dict[str, Any],
                    iter_vars: dict[str, Any] | None) -> None:
        """A `kind: playbook` step runs as a child execution, started by the orchestrator (spec 8)."""
        if len(step.tool) != 1:
            self.unsent(cid, step.step, "validation",
                        f"step '{step.step}': a playbook call must be the step's only tool; move the "
                        "other tasks to steps of their own")
            return
        tool = step.tool[0]
        assert isinstance(tool, PlaybookTool)  # compile_net marks a step `child` by its playbook tool
        iterator = step.loop.iterator if step.loop else None
        try:
            if loop_index is not None and step_input:  # a loop item's input: rendered with the item bound
                step_input = self.render(step_input, self.context(arc_args=arc_args, iterator=iterator,
                                                                  iter_vars=iter_vars),
                                         f"step '{step.step}' input")
            context = self.context(arc_args=arc_args, input=step_input, iterator=iterator,
                                   iter_vars=iter_vars)
            config = self.render({"path": tool.path, "version": tool.version, "input": tool.input or {}},
                                 context, f"step '{step.step}' playbook call")
        except TemplateError as exc:
            self.unsent(cid, step.step, exc.kind, str(exc))
            return
        child_input = {**step_input, **(config.get("input") or {})}
        if tool.assert_ is not None:
            breach = check_expects({"assert": tool.assert_.model_dump()}, child_input, step=step.step,
                                   task=step.task_name(0))
            if breach is not None:  # the contract (spec 3): the child does not start
                assert breach.error is not None
                self.state.pending.pop(cid, None)
                self.step_done(step.step, False, None, breach.error)
                return
        version = config.get("version")
        if isinstance(version, str) and version.strip().isdigit():
            version = int(version)
        if version not in (None, "") and not isinstance(version, int):
            self.unsent(cid, step.step, "validation",
                        f"step '{step.step}': playbook version {version!r} is not a catalog version "
                        "number; omit it for the latest")
            return
        timeout = tool.timeout if isinstance(tool.timeout, float) else None
        parent_id = as_int(self.state.execution_id)
        if parent_id is None:  # a hex id from before 2026-12: its children keep the ids it recorded
            child = derived_id("child", cid)
        else:  # time-ordered by the event that caused the call, above every id this execution gave a child
            number = child_execution_id(max(self.state.last_child_id, parent_id), self.cause.timestamp, cid)
            self.state.last_child_id = number
            child = str(number)
        self.out.commands.append(StartChild(
            command_id=cid, execution_id=self.state.execution_id,
            child_execution_id=child, step=step.step, run=run, loop_index=loop_index,
            path=str(config.get("path")), version=version or None,
            input=child_input, return_step=tool.return_step, timeout_s=timeout,
            keychain=inherited_by_child(self.net.transition(step.step).command.keychain, self.env.keychain,
                                        self.state.execution_id, self.state.workload)))
        payload = {"child_execution_id": child}
        if tool.task is not None:
            payload["task"] = tool.task
        self.emit("step.scheduled", step=step.step, run=run, loop_index=loop_index, command_id=cid,
                  payload=payload)

    def unsent(self, cid: str, step: str, kind: str, message: str) -> None:
        """A dispatch that failed before its command was sent: the step fails with this error."""
        self.state.pending.pop(cid, None)
        self.step_done(step, False, None, engine_error(kind, message))

    # ------------------------------------------------------------------ loops
    def start_loop(self, step: Step, run: int, arc_args: dict[str, Any], step_input: dict[str, Any],
                   context: Mapping[str, Any]) -> None:
        assert step.loop is not None
        name = step.step
        try:
            items = loop_items(self.render(step.loop.in_, context, f"step '{name}' loop.in"))
        except TemplateError as exc:
            self.step_done(name, False, None, engine_error(exc.kind, str(exc)))
            return
        if not isinstance(items, list):
            self.step_done(name, False, None, engine_error(
                "validation", f"step '{name}': loop.in must yield a list, got {type(items).__name__}"))
            return
        limit = self.loop_limit(step, context)
        if limit is False:
            return
        self.state.record(name).status = "running"
        self.state.loops[name] = LoopProgress(run=run, items=items, arc_args=arc_args,
                                              step_input=step_input, max_in_flight=limit)
        self.emit("loop.started", step=name, run=run, payload={"count": len(items)})
        self.fill_loop(step)

    def loop_limit(self, step: Step, context: Mapping[str, Any]) -> int | None | Literal[False]:
        """`loop.spec.max_in_flight`, rendered when it is a template (spec 6); False when it fails the
        step (it did not yield a positive integer)."""
        assert step.loop is not None
        value: Any = step.loop.spec.max_in_flight
        if not isinstance(value, str):
            return value
        name = step.step
        try:
            value = self.render(value, context, f"step '{name}' loop.spec.max_in_flight")
        except TemplateError as exc:
            self.step_done(name, False, None, engine_error(exc.kind, str(exc)))
            return False
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.step_done(name, False, None, engine_error(
                "validation", f"step '{name}': loop.spec.max_in_flight must yield a positive integer, "
                              f"got {value!r}"))
            return False
        return value

    def fill_loop(self, step: Step) -> None:
        assert step.loop is not None
        loop = self.state.loops[step.step]
        parallel = loop.max_in_flight or len(loop.items)
        limit = 1 if step.loop.spec.mode == "sequential" else parallel
        while not loop.stopping and loop.next_index < len(loop.items) and len(loop.in_flight) < limit \
                and not self.state.cancelling:
            index = loop.next_index
            loop.next_index += 1
            loop.in_flight.add(index)
            self.issue(step, loop.run, index, loop.arc_args, loop.step_input, loop.items[index])
        if loop.done:
            self.finish_loop(step)

    def loop_item_done(self, dispatch: Dispatch, ok: bool, envelope: ResultEnvelope) -> None:
        step = self.net.playbook.step(dispatch.step)
        loop = self.state.loops.get(dispatch.step)
        if loop is None or dispatch.loop_index is None:
            return
        index = dispatch.loop_index
        loop.in_flight.discard(index)
        self.apply_ctx_writes(dispatch.step, self.cause.payload.get("ctx") or {})
        if ok and envelope.ref is not None:
            loop.refs[index] = envelope.ref.model_dump(by_alias=True)
        elif ok:
            loop.results[index] = envelope.data
        else:
            loop.failed[index] = envelope.error or engine_error("internal", "item failed")
            if not step.spec.policy.failure.mode == "best_effort" and not loop.stopping:
                loop.stopping = True
                for cid, other in list(self.state.pending.items()):
                    if other.step == dispatch.step and other.loop_index is not None:
                        self.out.commands.append(CancelStep(
                            command_id=cid, execution_id=self.state.execution_id,
                            reason=f"item {index} of loop '{dispatch.step}' failed"))
        self.fill_loop(step)

    def finish_loop(self, step: Step) -> None:
        name = step.step
        if self.state.loops[name].cursor is not None:
            self.finish_cursor(step, self.state.loops.pop(name))
            return
        loop = self.state.loops.pop(name)
        values = [loop.results.get(i) for i in range(len(loop.items))]  # items by reference stay refs
        finished = len(loop.results) + len(loop.failed)
        stats = {"total": len(loop.items), "succeeded": len(loop.results) + len(loop.refs),
                 "failed": len(loop.failed)}
        self.emit("loop.completed", step=name, run=loop.run,
                  payload={"stats": stats, "finished": finished})
        result = StepResult(data=values, task_results=None, stats=stats,
                            item_refs=dict(loop.refs) if loop.refs else None)
        best_effort = step.spec.policy.failure.mode == "best_effort"
        if loop.failed and not best_effort:
            first = min(loop.failed)
            failed = loop.failed[first]
            error = failed.model_copy(update={"message": f"item {first} of loop '{name}' failed: "
                                                         f"{failed.message}"})
            self.step_done(name, False, result, error, loop=True)
        else:
            self.step_done(name, True, result, None, loop=True)

    # ------------------------------------------------------------------ finishing a step
    def apply_ctx_writes(self, step: str, writes: Mapping[str, Any]) -> None:
        if not writes:
            return
        for key, value in writes.items():  # keys are scoped names: `ctx.total`
            _set_path(self.state.ctx, key[4:] if key.startswith("ctx.") else key, value)
        self.emit("ctx.updated", step=step, payload={"writes": dict(writes), "source": "task"})

    def write_set(self, writes: Mapping[str, Any] | None, context: Mapping[str, Any], where: str,
                  step: str) -> None:
        if not writes:
            return
        applied: dict[str, Any] = {}
        for key, template in writes.items():
            value = self.render(template, context, where)
            scope, _, name = key.partition(".")
            if scope == "ctx":
                _set_path(self.state.ctx, name, value)
                applied[key] = value
        if applied:
            self.emit("ctx.updated", step=step, payload={"writes": applied, "source": where})

    def step_done(self, name: str, ok: bool, result: StepResult | None, error: ToolError | None,
                  *, loop: bool = False, reported: bool = False) -> None:
        """A step finished: `reported` when its worker already recorded the outcome event."""
        state = self.state
        step = self.net.playbook.step(name)
        record = state.record(name)
        record.status = "succeeded" if ok else "failed"
        record.error = error
        if result is not None or ok:
            record.result = result or StepResult()
            self._handles = None
        state.last_finished = name
        if loop:
            # the list travels inline only when small; else readers rebuild it from the item events
            inline = result is not None and _json_size(result.data) <= INLINE_MAX_BYTES
            payload: dict[str, Any] = {"stats": result.stats if result else None}
            if result is not None and result.item_refs and inline:
                payload["item_refs"] = {str(i): ref for i, ref in result.item_refs.items()}
            if result is not None and not inline:
                payload["items_in_events"] = True
            loop_def = self.net.transition(name).loop
            if loop_def is not None and loop_def.cursor is not None:
                payload["cursor"] = True  # readers rebuild {stats, results} in claim order
            envelope = ResultEnvelope(status="ok" if ok else "error",
                                      data=result.data if result and inline else None,
                                      error=None if ok else _tool_error(error))
            self.emit("step.succeeded" if ok else "step.failed", step=name, result=envelope,
                      run=record.runs, payload=payload)
        elif not ok and not reported:
            # a failure decided here (a template, max_runs): record it as the step's outcome
            self.emit("step.failed", step=name, result=ResultEnvelope(
                status="error", error=_tool_error(error)))
        event_name = ("loop.done" if loop else "call.done") if ok else "call.error"
        context = self.context(event={"name": event_name, "step": name, "status": record.status,
                                      "error": _plain(error)})
        if ok:
            try:
                self.write_set(step.set, context, f"step '{name}' set", name)
            except TemplateError as exc:
                record.status = "failed"
                record.error = engine_error(exc.kind, str(exc))
                self.emit("step.failed", step=name, result=ResultEnvelope(
                    status="error", error=_tool_error(record.error)))
                ok, event_name = False, "call.error"
            context = self.context(event={"name": event_name, "step": name, "status": record.status,
                                          "error": _plain(record.error)})
        taken = self.route(step, ok, context)
        if not taken:
            if not ok:
                if step.spec.policy.failure.mode == "best_effort":
                    pass
                else:
                    self.unhandled(name, record.error)
            elif step.next and step.next.arcs and self.net.playbook.executor.spec.no_next_is_error:
                self.unhandled(name, engine_error("validation", f"no arc of step '{name}' matched and "
                                                            "executor.spec.no_next_is_error is set"))

    def route(self, step: Step, ok: bool, context: Mapping[str, Any]) -> bool:
        if step.next is None or self.state.cancelling:
            return False
        taken = []
        for arc in step.next.arcs:
            if arc.when is None:
                holds = ok
            elif isinstance(arc.when, bool):
                holds = arc.when
            else:
                try:
                    holds = bool(self.render(arc.when, context, f"step '{step.step}' arc to '{arc.step}'",
                                             condition=True))
                except TemplateError as exc:
                    if ok:
                        self.unhandled(step.step, engine_error(exc.kind, str(exc)))
                        return True
                    warning = (f"step '{step.step}' arc to '{arc.step}': {exc} "
                               "(counted as false: the step failed)")
                    self.state.warnings.append(warning)
                    self.new_warnings.append(warning)
                    holds = False
            if holds:
                taken.append(arc)
                if step.next.spec.mode == "exclusive":
                    break
        for arc in taken:
            args: dict[str, Any] = {}
            if arc.set:
                try:
                    self.write_set(arc.set, context, f"step '{step.step}' arc to '{arc.step}' set", step.step)
                except TemplateError as exc:
                    self.unhandled(step.step, engine_error(exc.kind, str(exc)))
                    return True
                args = {k[4:]: _get_path(self.state.ctx, k[4:]) for k in arc.set if k.startswith("ctx.")}
            self.arrive(arc.step, step.step, args)
        return bool(taken)

    def arrive(self, target: str, source: str, args: dict[str, Any]) -> None:
        if self.net.transition(target).is_join:
            self.state.arrivals.setdefault(target, {})[source] = args
        else:
            self.dispatch(target, args)

    def unhandled(self, name: str, error: ToolError | None) -> None:
        state = self.state
        if name not in state.unhandled:
            state.unhandled.append(name)
        if state.error is None:
            state.error = (error or engine_error("internal", f"step '{name}' failed")).model_copy(
                update={"step": name})
        self.cancel_pending(f"step '{name}' failed")

    def cancel_pending(self, reason: str) -> None:
        for cid in sorted(self.state.pending):
            self.out.commands.append(CancelStep(command_id=cid, execution_id=self.state.execution_id,
                                                reason=reason))
        for loop in self.state.loops.values():
            loop.stopping = True

    # ------------------------------------------------------------------ joins and termination
    def settle(self) -> None:
        """Fire ready joins, then decide termination (spec 4.1, 4.2)."""
        state = self.state
        while state.status == "running":
            fired = False
            waiting = [j for j, arrived in state.arrivals.items() if arrived]
            for join in sorted(waiting, key=lambda j: self.net.transitions[j].index):
                if self.join_ready(join):
                    arrivals = state.arrivals.pop(join)
                    merged: dict[str, Any] = {}
                    for source in sorted(arrivals):
                        merged.update(arrivals[source])
                    self.dispatch(join, merged)
                    fired = True
                    break
            if fired:
                continue
            if state.pending or state.loops:
                return
            if any(state.arrivals.values()):
                if state.unhandled or state.cancelling:
                    state.arrivals.clear()
                else:
                    return  # pragma: no cover - a join with arrivals and nothing upstream is ready
            self.terminate()
            return

    def join_ready(self, join: str) -> bool:
        blockers = self.net.ancestors.get(join, frozenset()) - {join}
        if self.state.active_steps() & blockers:
            return False
        component = self.net.components.get(join)
        for other, arrived in self.state.arrivals.items():
            if other != join and arrived and other in blockers \
                    and self.net.components.get(other) != component:
                return False
        return True

    def terminate(self) -> None:
        state = self.state
        if state.cancelling:
            state.status = "cancelled"
            self.emit("execution.cancelled", payload={"error": _plain(state.error)})
            return
        final = self.net.final
        if final and not state.final_dispatched:
            state.final_dispatched = True
            self.dispatch(final, {})
            if state.pending or state.loops:
                return
        if state.unhandled:
            self.fail_execution(state.error or engine_error("internal", "a step failed with no handler"))
        else:
            state.status = "completed"
            result = state.result
            last = state.steps[state.last_finished].result if state.last_finished else None
            if _json_size(result) <= INLINE_MAX_BYTES and not (last is not None and last.item_refs):
                self.emit("execution.completed", payload={"result": result})
            else:  # large: the result is the last finished step's, read it there
                self.emit("execution.completed", payload={"result_step": state.last_finished})

    def fail_execution(self, error: ToolError) -> None:
        self.state.status = "failed"
        self.state.error = self.state.error or error
        self.emit("execution.failed", payload={"error": _plain(self.state.error)})


def fire(net: Net, state: ExecutionState, event: Event, env: FireEnv | None = None) -> Decision:
    """Apply one input event to the state (in place) and return what follows from it."""
    firing = _Firing(net, state, event, env or FireEnv())
    if state.status != "running":
        return firing.out
    if event.type == "execution.started":
        firing.started()
    elif event.type == "execution.cancel_requested":
        firing.cancel_requested()
    elif event.type in ("step.succeeded", "step.failed", "loop.item.succeeded", "loop.item.failed",
                        "loop.claimer.stopped"):
        firing.outcome()
    elif event.type in ("step.started", "task.attempt.failed", "step.retrying"):
        firing.progress()
        return firing.out
    else:
        return firing.out
    if state.started:
        firing.settle()
    return firing.out


# ---------------------------------------------------------------------- helpers
def _step_result(envelope: ResultEnvelope) -> StepResult:
    meta = envelope.meta.model_extra or {}
    return StepResult(
        data=envelope.data,
        ref=envelope.ref.model_dump(by_alias=True) if envelope.ref else None,
        columns=meta.get("columns"),
        statement_count=meta.get("statement_count"),
        task_results=meta.get("task_results"),
    )


def _plain(error: ToolError | None) -> dict[str, Any] | None:
    """The error as events and templates carry it."""
    return error.model_dump(exclude_none=True) if error is not None else None


def _tool_error(error: ToolError | None) -> ToolError:
    return error or engine_error("internal", "unknown failure")


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=str, separators=(",", ":")))


def _get_path(source: Mapping[str, Any], dotted: str) -> Any:
    node: Any = source
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


