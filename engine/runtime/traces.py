"""The orchestrator's spans, built from the events it handles (docs/insights.md "Tracing").

An execution's events say when each thing started and ended: the execution (execution.started to its
terminal event: the root span), a loop step (loop.started to loop.completed), a step's run or a loop item
(step.scheduled to the outcome of its command), a command's wait for capacity (step.deferred to
step.dispatched). The spans are timed by when this orchestrator handled those events and named by ids
derived from the execution's (engine.protocol.tracecontext), so that a replay or a takeover names them
alike; a span whose start this orchestrator did not see (it took the execution over) starts at the
outcome's time less the duration the worker reported. Only ids, names, pools, workers, attempts, statuses
and error kinds go into attributes: never inputs or results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.protocol.events import TERMINAL_EVENTS, Event, ends_command
from engine.protocol.tracecontext import (
    command_span_id,
    execution_span_id,
    loop_span_id,
    trace_id_for,
    wait_span_id,
)
from engine.runtime.spans import AttributeValue, SpanRecord, SpanSink

MAX_TRACES = 10_000  # executions followed at once: one whose end this orchestrator never sees (its
# partition moved) is forgotten, oldest first, beyond that
_OUTCOMES = frozenset({"step.succeeded", "step.failed", "loop.item.succeeded", "loop.item.failed",
                       "loop.claimer.stopped"})


@dataclass(slots=True)
class _Open:
    start_ns: int
    parent_id: str | None
    attributes: dict[str, AttributeValue]


@dataclass(slots=True)
class _Trace:
    trace_id: str
    start_ns: int
    attributes: dict[str, AttributeValue]  # on every span of the execution
    spans: dict[object, _Open] = field(default_factory=dict)  # open spans by their key


class TraceRecorder:
    """Folds the events of each batch into spans, sent to `sink` as each one ends."""

    def __init__(self, sink: SpanSink, clock: Callable[[], int] = time.time_ns) -> None:
        self.sink = sink
        self.clock = clock
        self._traces: dict[str, _Trace] = {}

    def observe(self, events: Iterable[Event]) -> None:
        now = self.clock()
        for event in events:
            handler = _HANDLERS.get(event.type)
            if handler is not None:
                handler(self, event, now)

    # ------------------------------------------------------------------ handlers
    def _trace(self, event: Event, now: int) -> _Trace:
        trace = self._traces.get(event.execution_id)
        if trace is None:  # taken over: the execution started elsewhere
            trace = self._open(event.execution_id, _Trace(
                trace_id_for(event.execution_id), now, {"noetl.execution.id": event.execution_id}))
        return trace

    def _open(self, execution_id: str, trace: _Trace) -> _Trace:
        if len(self._traces) >= MAX_TRACES and execution_id not in self._traces:
            del self._traces[next(iter(self._traces))]
        self._traces[execution_id] = trace
        return trace

    def _started(self, event: Event, now: int) -> None:
        attributes: dict[str, AttributeValue] = {"noetl.execution.id": event.execution_id}
        payload = event.payload
        if payload.get("path"):
            attributes["noetl.playbook.path"] = str(payload["path"])
        if payload.get("version") is not None:
            attributes["noetl.playbook.version"] = int(payload["version"])
        if payload.get("parent_execution_id"):
            attributes["noetl.parent_execution.id"] = str(payload["parent_execution_id"])
        self._open(event.execution_id, _Trace(trace_id_for(event.execution_id), now, attributes))

    def _ended(self, event: Event, now: int) -> None:
        trace = self._traces.pop(event.execution_id, None)
        if trace is None:
            trace = _Trace(trace_id_for(event.execution_id), now, {"noetl.execution.id": event.execution_id})
        status = event.type.split(".")[1]
        error = None
        if event.type != "execution.completed":
            error = status if event.result is None or event.result.error is None \
                else event.result.error.kind
        attributes = {**trace.attributes, "noetl.status": status}
        if error is not None:
            attributes["noetl.error.kind"] = error
        name = f"execution {trace.attributes.get('noetl.playbook.path', event.execution_id)}"
        self.sink.emit(SpanRecord(trace.trace_id, execution_span_id(event.execution_id), None, name,
                                  trace.start_ns, now, attributes, error))

    def _scheduled(self, event: Event, now: int) -> None:
        if not event.command_id:
            return
        trace = self._trace(event, now)
        attributes = _step_attributes(trace, event)
        if "child_execution_id" in event.payload:
            attributes["noetl.child_execution.id"] = str(event.payload["child_execution_id"])
        trace.spans[event.command_id] = _Open(now, self._parent(trace, event), attributes)

    def _parent(self, trace: _Trace, event: Event) -> str:
        """A loop's item (or claimer) belongs to the loop's span; any other command to the execution's."""
        key = ("loop", event.step, event.run or 0)
        if event.loop_index is not None or key in trace.spans:
            return loop_span_id(event.execution_id, event.step or "", event.run)
        return execution_span_id(event.execution_id)

    def _outcome(self, event: Event, now: int) -> None:
        if not event.command_id or not ends_command(event):
            return
        trace = self._trace(event, now)
        opened = trace.spans.pop(event.command_id, None)
        if opened is None:  # scheduled before this orchestrator took the execution over
            start = now - int((event.duration_ms or 0.0) * 1e6)
            opened = _Open(start, self._parent(trace, event), _step_attributes(trace, event))
        attributes = opened.attributes
        for key, value in (("noetl.worker", event.worker), ("noetl.pool", event.pool),
                           ("noetl.attempt", event.attempt)):
            if value is not None:
                attributes[key] = value
        failed = event.type.endswith("failed")
        attributes["noetl.status"] = "failed" if failed else "succeeded"
        error = None
        if failed:
            error = ("failed" if event.result is None or event.result.error is None
                     else event.result.error.kind)
            attributes["noetl.error.kind"] = error
        loop_index = attributes.get("noetl.loop.index")
        name = (f"item {event.step}[{loop_index}]" if loop_index is not None else f"step {event.step}")
        self.sink.emit(SpanRecord(trace.trace_id, command_span_id(event.execution_id, event.command_id),
                                  opened.parent_id, name, opened.start_ns, now, attributes, error))

    def _loop_started(self, event: Event, now: int) -> None:
        trace = self._trace(event, now)
        attributes = {**trace.attributes, "noetl.step": event.step or "", "noetl.run": event.run or 0}
        if isinstance(event.payload.get("count"), int):
            attributes["noetl.loop.count"] = event.payload["count"]
        trace.spans[("loop", event.step, event.run or 0)] = _Open(
            now, execution_span_id(event.execution_id), attributes)

    def _loop_completed(self, event: Event, now: int) -> None:
        trace = self._trace(event, now)
        opened = trace.spans.pop(("loop", event.step, event.run or 0), None)
        if opened is None:
            return  # started before a takeover: its items' spans still name it as their parent
        span_id = loop_span_id(event.execution_id, event.step or "", event.run)
        self.sink.emit(SpanRecord(trace.trace_id, span_id, opened.parent_id, f"loop {event.step}",
                                  opened.start_ns, now, opened.attributes))

    def _deferred(self, event: Event, now: int) -> None:
        trace = self._trace(event, now)
        reason = str(event.payload.get("reason") or "")
        for command_id in _commands(event):
            attributes = {**trace.attributes, "noetl.step": event.step or "", "noetl.command.id": command_id,
                          "noetl.wait.reason": reason}
            trace.spans[("wait", command_id)] = _Open(
                now, command_span_id(event.execution_id, command_id), attributes)

    def _dispatched(self, event: Event, now: int) -> None:
        trace = self._trace(event, now)
        for command_id in _commands(event):
            opened = trace.spans.pop(("wait", command_id), None)
            if opened is None:
                continue  # went to another pool without waiting, or waited before a takeover
            if event.pool:
                opened.attributes["noetl.pool"] = event.pool
            self.sink.emit(SpanRecord(trace.trace_id, wait_span_id(event.execution_id, command_id),
                                      opened.parent_id, f"dispatch wait {event.step}", opened.start_ns, now,
                                      opened.attributes))


def _step_attributes(trace: _Trace, event: Event) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {**trace.attributes, "noetl.step": event.step or "",
                                             "noetl.run": event.run or 0}
    if event.command_id:
        attributes["noetl.command.id"] = event.command_id
    if event.loop_index is not None:
        attributes["noetl.loop.index"] = event.loop_index
    if event.pool:
        attributes["noetl.pool"] = event.pool
    return attributes


def _commands(event: Event) -> list[str]:
    ids = event.payload.get("commands")
    if isinstance(ids, list):
        return [str(command_id) for command_id in ids]
    return [event.command_id] if event.command_id else []


_HANDLERS: dict[str, Callable[[TraceRecorder, Event, int], None]] = {
    "execution.started": TraceRecorder._started,
    "step.scheduled": TraceRecorder._scheduled,
    "loop.started": TraceRecorder._loop_started,
    "loop.completed": TraceRecorder._loop_completed,
    "step.deferred": TraceRecorder._deferred,
    "step.dispatched": TraceRecorder._dispatched,
    **dict.fromkeys(_OUTCOMES, TraceRecorder._outcome),
    **dict.fromkeys(TERMINAL_EVENTS, TraceRecorder._ended),
}
