"""Cursor loops (spec 6.1) in the firing function: a loop step whose rows are claimed from a work queue.

The step issues `max_in_flight` claimer commands. Each claimer, on a worker, claims rows, runs the
step's pipeline on each and reports every row as a `loop.item.*` event (with `payload.cursor`: which
claimer, delivery, run, claim and row, and when it was claimed), then `loop.claimer.stopped` when a
claim returns no row (or fails, or it is cancelled). The loop ends when every claimer has stopped and
their rows are in; its result is `{stats: {claimed, succeeded, failed}, results}` in claim order
(`claim_key`), so replaying the same events gives the same list. Mixed into the firing class of
`engine.net.fire`, whose state, net, emitting and dispatching it uses; pure like it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from engine.net.state import CursorProgress, Dispatch, LoopProgress, StepResult
from engine.protocol.commands import CancelStep
from engine.protocol.events import claim_key
from engine.protocol.results import ResultEnvelope, ToolError, engine_error

if TYPE_CHECKING:
    from engine.dsl.model import Step
    from engine.net.fire import Decision
    from engine.net.net import Net
    from engine.net.state import ExecutionState
    from engine.protocol.events import Event, EventType


class _Firing(Protocol):
    """What the cursor loop methods use of the firing class they are mixed into (`engine.net.fire`)."""

    net: Net
    state: ExecutionState
    cause: Event
    out: Decision

    def emit(self, type_: EventType, *, step: str | None = None, result: ResultEnvelope | None = None,
             **fields: Any) -> None: ...

    def issue(self, step: Step, run: int, loop_index: int | None, arc_args: dict[str, Any],
              step_input: dict[str, Any], item: Any, *, claimer: int | None = None) -> str: ...

    def step_done(self, name: str, ok: bool, result: StepResult | None, error: ToolError | None,
                  *, loop: bool = False, reported: bool = False) -> None: ...

    def apply_ctx_writes(self, step: str, writes: Mapping[str, Any]) -> None: ...

    def finish_loop(self, step: Step) -> None: ...

    def claimer_done(self, step: Step, loop: LoopProgress, claimer: int) -> None: ...

    def stop_cursor(self, name: str, loop: LoopProgress, reason: str) -> None: ...


class CursorLoops:
    """The cursor loop half of `_Firing` (engine/net/fire.py)."""

    def start_cursor(self: _Firing, step: Step, run: int, arc_args: dict[str, Any],
                     step_input: dict[str, Any], claimers: int | None = None) -> None:
        """`max_in_flight` claimers, each a command run by a worker: it claims rows, runs the pipeline on
        each (reporting every row as a loop item) and claims again until a claim returns no row."""
        loop_def = self.net.transition(step.step).loop
        cursor = loop_def.cursor if loop_def is not None else None
        assert cursor is not None
        name = step.step
        if self.net.transition(name).command.child:
            self.step_done(name, False, None, engine_error(
                "validation", f"step '{name}': a cursor loop runs its rows on the claimer's worker; a "
                              "playbook call cannot be its tool"))
            return
        claimers = claimers or cursor.claimers
        self.state.record(name).status = "running"
        progress = CursorProgress()
        loop = self.state.loops[name] = LoopProgress(run=run, items=[], arc_args=arc_args,
                                                     step_input=step_input, cursor=progress,
                                                     max_in_flight=claimers)
        self.emit("loop.started", step=name, run=run,
                  payload={"cursor": {"kind": cursor.kind, "claimers": claimers,
                                      "max_rows": cursor.max_rows}})
        for claimer in range(claimers):
            loop.in_flight.add(claimer)
            cid = self.issue(step, run, None, arc_args, step_input, None, claimer=claimer)
            progress.commands[cid] = claimer

    def cursor_item(self: _Firing) -> None:
        """One row of a cursor loop finished; rows of a claimer this loop never issued (or that came
        after the loop ended) are not its rows."""
        event = self.cause
        loop = self.state.loops.get(event.step or "")
        cursor = loop.cursor if loop is not None else None
        if loop is None or cursor is None or event.run != loop.run or event.command_id not in cursor.commands:
            return
        info = event.payload["cursor"]
        key = claim_key(info)
        if key in cursor.results or key in cursor.refs or key in cursor.failed:
            return
        name = event.step or ""
        step = self.net.playbook.step(name)
        envelope = event.result or ResultEnvelope.fail("internal", "the worker sent no result")
        record = self.state.record(name)
        record.attempts = max(record.attempts, envelope.meta.attempt)
        self.apply_ctx_writes(name, event.payload.get("ctx") or {})
        tag = (event.command_id or "", f"{key[2]}:{key[3]}")
        cursor.reported[tag] = cursor.reported.get(tag, 0) + 1
        if event.type == "loop.item.succeeded" and envelope.status == "ok":
            if envelope.ref is not None:
                cursor.refs[key] = envelope.ref.model_dump(by_alias=True)
            else:
                cursor.results[key] = envelope.data
        else:
            cursor.failed[key] = envelope.error or engine_error("internal", "the row failed")
            if step.spec.policy.failure.mode != "best_effort":
                self.stop_cursor(name, loop, f"a row of loop '{name}' failed")
        drained = cursor.draining.get(event.command_id or "")
        if drained is not None and drained[0] == tag[1] and cursor.reported[tag] >= drained[1]:
            del cursor.draining[event.command_id or ""]
            self.claimer_done(step, loop, cursor.commands[event.command_id or ""])

    def claimer_stopped(self: _Firing, dispatch: Dispatch) -> None:
        """A claimer ended: its claim returned no row, or failed, or it was cancelled. The loop waits for
        the rows it reported (they travel before its end, but a redelivered batch may reorder them)."""
        event = self.cause
        loop = self.state.loops.get(dispatch.step)
        cursor = loop.cursor if loop is not None else None
        if loop is None or cursor is None or dispatch.claimer is None:
            return
        envelope = event.result or ResultEnvelope.fail("internal", "the worker sent no result")
        if envelope.status != "ok":
            error = envelope.error or engine_error("internal", "the claimer failed")
            best_effort = self.net.playbook.step(dispatch.step).spec.policy.failure.mode == "best_effort"
            stopped_here = cursor.error is not None or (cursor.failed and not best_effort)
            if not stopped_here:  # a failed claim, or a cancel from outside (the loop fails with it)
                cursor.error = error
            self.stop_cursor(dispatch.step, loop, f"a claimer of loop '{dispatch.step}' failed")
        info = event.payload.get("cursor") or {}
        rows = int(info.get("rows") or 0)
        tag = f"{int(info.get('delivery') or 1)}:{info.get('run') or ''}"
        if cursor.reported.get((dispatch.command_id, tag), 0) < rows:
            cursor.draining[dispatch.command_id] = (tag, rows)
            return
        self.claimer_done(self.net.playbook.step(dispatch.step), loop, dispatch.claimer)

    def claimer_done(self: _Firing, step: Step, loop: LoopProgress, claimer: int) -> None:
        loop.in_flight.discard(claimer)
        if loop.done:
            self.finish_loop(step)

    def stop_cursor(self: _Firing, name: str, loop: LoopProgress, reason: str) -> None:
        """fail_fast (a row failed) or a claim failed: the other claimers are cancelled."""
        if loop.stopping:
            return
        loop.stopping = True
        for cid, other in sorted(self.state.pending.items()):
            if other.step == name and other.claimer is not None:
                self.out.commands.append(CancelStep(command_id=cid, execution_id=self.state.execution_id,
                                                    reason=reason))

    def finish_cursor(self: _Firing, step: Step, loop: LoopProgress) -> None:
        """`{stats: {claimed, succeeded, failed}, results}`, the results in claim order (a failed row's
        is null, a row stored by reference is listed in the result's item_refs)."""
        cursor = loop.cursor
        assert cursor is not None
        name = step.step
        keys = sorted({*cursor.results, *cursor.refs, *cursor.failed})
        values = [cursor.results.get(key) for key in keys]
        refs = {position: cursor.refs[key] for position, key in enumerate(keys) if key in cursor.refs}
        stats = {"claimed": len(keys), "succeeded": len(cursor.results) + len(cursor.refs),
                 "failed": len(cursor.failed)}
        self.emit("loop.completed", step=name, run=loop.run, payload={"stats": stats, "finished": len(keys)})
        result = StepResult(data={"stats": stats, "results": values}, stats=stats, item_refs=refs or None)
        if cursor.error is not None:
            error = cursor.error.model_copy(update={"message": f"step '{name}': {cursor.error.message}"})
            self.step_done(name, False, result, error, loop=True)
        elif cursor.failed and step.spec.policy.failure.mode != "best_effort":
            position, key = next((p, k) for p, k in enumerate(keys) if k in cursor.failed)
            failed = cursor.failed[key]
            error = failed.model_copy(update={"message": f"row {position} of cursor loop '{name}' "
                                                         f"(claimer {key[1]}) failed: {failed.message}"})
            self.step_done(name, False, result, error, loop=True)
        else:
            self.step_done(name, True, result, None, loop=True)
