"""/ui/executions/{id}: the summary, the timeline and graph as SVG, events, results and errors, attempts,
the diagnosis and similar past failures (from what the serving process put on app.state)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from control_plane.api.context import services_of
from control_plane.console import graph, timeline
from control_plane.console.render import as_json, page
from control_plane.console.session import ConsoleRoute, viewer_of
from control_plane.errors import NotFoundError
from control_plane.services.executions import ExecutionService
from control_plane.services.sessions import CONSOLE_ROOT
from engine.dsl.load import load_playbook_text
from engine.errors import NoetlError
from engine.protocol.events import TERMINAL_EVENTS, Event

log = logging.getLogger(__name__)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

MAX_EVENTS = 5000  # the page shows at most this many events (the API pages through all of them)
MAX_TEXT = 4000  # characters of a result or error shown
_ENDED = {e.split(".", 1)[1] for e in TERMINAL_EVENTS}
ExecutionId = Annotated[str, Path(min_length=1, max_length=200)]


async def _events(service: ExecutionService, execution_id: str) -> tuple[list[Event], bool]:
    """The execution's events in order (at most MAX_EVENTS), and whether more were left out."""
    out: list[Event] = []
    while len(out) < MAX_EVENTS:
        batch = await service.events(execution_id, after_seq=(out[-1].seq or 0) if out else 0, limit=1000)
        out.extend(batch)
        if len(batch) < 1000:
            return out, False
    return out[:MAX_EVENTS], True


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else as_json(value)
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT} more characters)"


def _event_row(event: Event) -> dict[str, Any]:
    error = event.result.error if event.result is not None else None
    detail = (error.message if error is not None
              else event.payload.get("reason") or event.payload.get("task"))
    return {"event_id": event.event_id, "seq": event.seq, "at": event.timestamp, "type": event.type,
            "step": event.step, "loop_index": event.loop_index, "attempt": event.attempt,
            "worker": event.worker, "duration_ms": event.duration_ms,
            "failed": error is not None or event.type.endswith("failed"),
            "detail": str(detail)[:300] if detail else None}


async def _graph(request: Request, path: str, version: int, states: dict[str, str]) -> graph.Graph | None:
    try:
        entry = await services_of(request).catalog.get(path, version)
    except NotFoundError:
        return None  # deleted from the catalog since
    loaded = load_playbook_text(entry.text, path)
    return graph.layout(graph.arcs_of(loaded.playbook), states) if loaded.playbook is not None else None


async def _diagnosis(request: Request, execution_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """The diagnosis as JSON, or a note saying why there is none."""
    diagnoser = getattr(request.app.state, "diagnosis", None)
    if diagnoser is None:
        return None, ("diagnosis is not enabled in this server: start it with the `noetl` command "
                      "(`noetl server start` or `noetl dev up`), which enables it")
    try:
        found = await diagnoser.diagnose(execution_id)
    except NoetlError as exc:
        return None, f"the diagnosis failed: {exc.message}"
    return (found.model_dump(mode="json") if hasattr(found, "model_dump") else dict(found)), None


async def _similar(request: Request, execution_id: str) -> tuple[list[dict[str, Any]], str | None]:
    search = getattr(request.app.state, "similar", None)
    if search is None:
        return [], ("similar-failure search is not enabled in this server: start it with `--indexer`, or "
                    "run `noetl indexer start` beside it")
    try:
        found = await search.for_execution(execution_id, limit=5)
    except NoetlError as exc:
        return [], f"the similar-failure search failed: {exc.message}"
    return [r.to_dict() if hasattr(r, "to_dict") else dict(r) for r in found], None


@router.get(f"{CONSOLE_ROOT}/executions/{{id}}")
async def execution(request: Request, id: ExecutionId) -> Response:
    viewer = await viewer_of(request)
    service = services_of(request).executions
    record = await service.get(id)
    summary = await service.summary(id)
    events, truncated = await _events(service, id)
    status = summary["status"] if summary.get("status") in _ENDED else record.status
    steps: dict[str, dict[str, Any]] = summary.get("steps") or {}
    states = {name: str(state.get("status")) for name, state in steps.items()}
    failed_attempts = [_event_row(e) for e in events if e.type == "task.attempt.failed"]
    diagnosis, diagnosis_note = await _diagnosis(request, id)
    similar, similar_note = await _similar(request, id) if status == "failed" else ([], None)
    return page("execution.html", {
        "viewer": viewer, "active": "executions", "execution": record, "status": status,
        "result": _short(summary.get("result")), "error": _short(summary.get("error")),
        "steps": [{"name": name, "status": state.get("status"), "attempts": state.get("attempts", 0),
                   "result": _short(state.get("result")), "error": _short(state.get("error"))}
                  for name, state in steps.items()],
        "timeline": timeline.build(events, datetime.now(UTC)),
        "graph": await _graph(request, record.playbook_path, record.playbook_version, states),
        "events": [_event_row(e) for e in events], "truncated": truncated,
        "failed_attempts": failed_attempts, "diagnosis": diagnosis, "diagnosis_note": diagnosis_note,
        "similar": similar, "similar_note": similar_note})
