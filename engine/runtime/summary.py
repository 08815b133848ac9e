"""An execution's outcome read from its event log: status only from terminal events (spec 4.2).

`summarize(events)` gives the document `noetl run --json` and `noetl status` print:
{"execution_id", "trace_id", "status", "result", "error", "steps": {NAME: {"status", "result", "error",
"attempts"}}}. `trace_id` is the execution's trace (docs/insights.md "Tracing"), as its `execution.started`
event records it (derived from the execution id: engine.protocol.tracecontext).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.protocol.events import TERMINAL_EVENTS, Event, claim_key
from engine.protocol.tracecontext import trace_id_for

_STEP_OUTCOMES = {"step.succeeded": "succeeded", "step.failed": "failed", "step.skipped": "skipped"}


def summarize(execution_id: str, events: Iterable[Event],
              resolve_ref: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    status = "running"
    result: Any = None
    error: Any = None
    steps: dict[str, dict[str, Any]] = {}
    items: dict[tuple[str, int | None], dict[int, Any]] = {}  # (step, run) -> index -> item result
    rows: dict[tuple[str, int | None], dict[Any, Any]] = {}  # cursor loop: (step, run) -> claim key -> result
    result_step: str | None = None
    started = False
    trace_id = trace_id_for(execution_id)

    def resolved(envelope: Any) -> Any:
        if envelope.ref is not None and resolve_ref is not None:
            return resolve_ref(envelope.ref.model_dump(by_alias=True))
        return envelope.data

    for event in events:
        if event.type == "execution.started":
            started = True
            trace_id = str(event.payload.get("trace_id") or trace_id)
        if event.type in TERMINAL_EVENTS:
            status = event.type.split(".", 1)[1]
            result = event.payload.get("result")
            result_step = event.payload.get("result_step")
            error = event.payload.get("error")
            continue
        if event.type[5:9] == "item" and event.step and "cursor" in event.payload:  # a cursor loop's row
            rows.setdefault((event.step, event.run), {})[claim_key(event.payload["cursor"])] = (
                resolved(event.result) if event.type == "loop.item.succeeded" and event.result else None)
        elif event.type == "loop.item.succeeded" and event.step and event.result is not None \
                and event.loop_index is not None:
            items.setdefault((event.step, event.run), {})[event.loop_index] = resolved(event.result)
        if not event.step:
            continue
        entry = steps.setdefault(event.step, {"status": "scheduled", "result": None, "error": None,
                                              "attempts": 0})
        if event.attempt:
            entry["attempts"] = max(entry["attempts"], event.attempt)
        if event.type == "step.started" and entry["status"] == "scheduled":
            entry["status"] = "running"
        elif event.type == "loop.started":
            entry["status"] = "running"
        elif event.type in _STEP_OUTCOMES and event.loop_index is None:
            entry["status"] = _STEP_OUTCOMES[event.type]
            envelope = event.result
            if envelope is not None:
                data = resolved(envelope)
                stats = event.payload.get("stats") or {}
                done = items.get((event.step, event.run)) or {}
                if event.payload.get("cursor") and (event.payload.get("items_in_events")
                                                    or event.payload.get("item_refs")):
                    claimed = rows.get((event.step, event.run)) or {}  # {stats, results}: claim order
                    data = {"stats": stats, "results": [claimed[key] for key in sorted(claimed)]}
                elif event.payload.get("items_in_events"):  # a large loop list: rebuilt from its items
                    data = [done.get(i) for i in range(int(stats.get("total", len(done))))]
                elif event.payload.get("item_refs") and isinstance(data, list):
                    data = list(data)
                    for index in event.payload["item_refs"]:
                        data[int(index)] = done.get(int(index))
                entry["result"] = data
                entry["error"] = envelope.error.model_dump(exclude_none=True) if envelope.error else None
                entry["attempts"] = max(entry["attempts"], envelope.meta.attempt)
            if event.payload.get("stats") is not None:
                entry["stats"] = event.payload["stats"]
    if not started:
        status = "unknown"
    if result is None and result_step and result_step in steps:
        result = steps[result_step]["result"]
    return {"execution_id": execution_id, "trace_id": trace_id, "status": status,
            "result": result, "error": error,
            "steps": steps}
