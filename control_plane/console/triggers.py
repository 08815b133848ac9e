"""/ui/triggers: the triggers and each one's firings and events; pause and resume for operators and above."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.responses import RedirectResponse

from control_plane.api.context import built_with, services_of
from control_plane.console.render import page
from control_plane.console.session import ConsoleRoute, checked_form, viewer_of
from control_plane.errors import InvalidArgumentError
from control_plane.services.auth import check_role
from control_plane.services.sessions import CONSOLE_ROOT
from control_plane.services.triggers import TriggerService
from control_plane.triggers.definition import summary

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

CHANGER = "operator"  # the role that pauses and resumes (as POST /api/triggers/{id}/pause|resume)
ACTIONS = {"pause": True, "resume": False}
DONE = {"pause": "paused", "resume": "resumed"}
FIRINGS = 50
EVENTS = 100
TriggerId = Annotated[str, Path(min_length=1, max_length=200)]


def triggers_of(request: Request) -> TriggerService:
    return built_with(services_of(request).triggers, "triggers")


def view(described: dict[str, Any]) -> dict[str, Any]:
    """A trigger as the pages show it: what `TriggerService.describe` says, plus its one-line definition."""
    spec = described["spec"]
    how = {k: v for k, v in spec.items() if k in ("catchup", "catchup_limit", "concurrency", "jitter")}
    return {**described, "definition": summary(described["kind"], spec, described["webhook_path"]),
            "how": how, "payload": spec.get("payload") or {}}


@router.get(f"{CONSOLE_ROOT}/triggers")
async def triggers(request: Request, path: Annotated[str | None, Query(max_length=500)] = None,
                   done: Annotated[str | None, Query(max_length=40)] = None,
                   id: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    viewer = await viewer_of(request)
    service = triggers_of(request)
    rows = [view(service.describe(record)) for record in await service.list(path=path or None)]
    notice = f"Trigger {id} {DONE[done]}." if done in DONE and id else None
    return page("triggers.html", {"viewer": viewer, "active": "triggers", "triggers": rows,
                                  "path": path or "", "notice": notice, "changer": viewer.may(CHANGER)})


@router.get(f"{CONSOLE_ROOT}/triggers/{{id}}")
async def trigger(request: Request, id: TriggerId,
                  done: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    viewer = await viewer_of(request)
    service = triggers_of(request)
    described = view(service.describe(await service.get(id)))  # NotFoundError: the 404 page
    firings = [service.describe_firing(f) for f in await service.firings(id, limit=FIRINGS)]
    events = await service.events(id, limit=EVENTS)
    notice = f"Trigger {DONE[done]}." if done in DONE else None
    return page("trigger.html", {"viewer": viewer, "active": "triggers", "t": described, "firings": firings,
                                 "events": events, "notice": notice, "changer": viewer.may(CHANGER),
                                 "firing_limit": FIRINGS, "event_limit": EVENTS})


@router.post(f"{CONSOLE_ROOT}/triggers/{{id}}/{{action}}")
async def change(request: Request, id: TriggerId, action: Annotated[str, Path(max_length=20)]) -> Response:
    viewer = await viewer_of(request)
    fields = await checked_form(request, viewer)
    if action not in ACTIONS:
        raise InvalidArgumentError(f"unknown action '{action}'", where="URL",
                                   fix=f"one of {', '.join(ACTIONS)}")
    check_role(viewer.token, CHANGER)  # the buttons are hidden from viewers; refused here anyway
    await triggers_of(request).set_paused(id, ACTIONS[action], actor=viewer.token.name)
    query = urlencode({"done": action, "id": id})
    if fields.get("back") == "list":
        return RedirectResponse(f"{CONSOLE_ROOT}/triggers?{query}", status_code=303)
    return RedirectResponse(f"{CONSOLE_ROOT}/triggers/{quote(id, safe='')}?{urlencode({'done': action})}",
                            status_code=303)
