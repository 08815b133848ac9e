"""/ui/catalog: the registered playbooks and their versions; /ui/catalog/playbook: one version's YAML, its
step graph and its plan as a per-pool Gantt chart; /ui/catalog/validate: check pasted YAML as
`noetl validate` does (nothing is registered)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from control_plane.api.context import built_with, services_of
from control_plane.console import gantt, graph
from control_plane.console.render import page
from control_plane.console.session import ConsoleRoute, Viewer, checked_form, viewer_of
from control_plane.errors import InvalidArgumentError
from control_plane.services.planning import PlanningService
from control_plane.services.sessions import CONSOLE_ROOT
from engine.dsl.model import Playbook
from engine.net.validate import Validation

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

MAX_PLAYBOOKS = 500  # the list shows this many paths (with every version of each)
MAX_PASTED = 1_000_000  # characters of YAML the validate form takes
PASTED_FILE = "pasted.yaml"  # the file name the located problems carry
CatalogPath = Annotated[str, Query(min_length=1, max_length=1000)]


def planning_of(request: Request) -> PlanningService:
    return built_with(services_of(request).planning, "planning")


def kinds_of(playbook: Playbook) -> dict[str, str]:
    """What the graph's boxes say under each step's name: its tool's kind (and whether it loops)."""
    return {s.step: (s.tool[0].kind if len(s.tool) == 1 else f"{len(s.tool)} tools")
            + (" loop" if s.loop is not None else "") for s in playbook.workflow}


@router.get(f"{CONSOLE_ROOT}/catalog")
async def catalog(request: Request) -> Response:
    viewer = await viewer_of(request)
    service = services_of(request).catalog
    listed = await service.list()
    entries = [{"latest": s, "versions": list(reversed(await service.versions(s.path)))}
               for s in listed[:MAX_PLAYBOOKS]]
    return page("catalog.html", {"viewer": viewer, "active": "catalog", "entries": entries,
                                 "more": max(len(listed) - MAX_PLAYBOOKS, 0)})


@router.get(f"{CONSOLE_ROOT}/catalog/playbook")
async def playbook(request: Request, path: CatalogPath,
                   version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    viewer = await viewer_of(request)
    service = services_of(request).catalog
    entry = await service.get(path, version)
    versions = list(reversed(await service.versions(path)))
    planning = planning_of(request)
    checked = await planning.validate(entry.text, path)
    drawn = graph.layout(graph.arcs_of(checked.playbook), kinds_of(checked.playbook)) \
        if checked.playbook is not None else None
    outcome = await planning.plan(path, checked)
    chart = gantt.build(gantt.planned_tasks(outcome.plan), outcome.pools.names) if outcome.plan else None
    return page("playbook.html", {
        "viewer": viewer, "active": "catalog", "entry": entry, "versions": versions, "graph": drawn,
        "diagnostics": checked.diagnostics, "outcome": outcome, "gantt": chart,
        "pools": [p.as_json() for p in outcome.pools], "pools_source": outcome.pools.source,
        "duration_label": gantt.duration_label})


def _validate_page(viewer: Viewer, text: str, checked: Validation | None = None) -> Response:
    return page("validate.html", {"viewer": viewer, "active": "catalog", "text": text, "checked": checked,
                                  "file": PASTED_FILE})


@router.get(f"{CONSOLE_ROOT}/catalog/validate")
async def validate_form(request: Request) -> Response:
    return _validate_page(await viewer_of(request), "")


@router.post(f"{CONSOLE_ROOT}/catalog/validate")
async def validate(request: Request) -> Response:
    """Every problem of the pasted YAML, located; nothing is registered."""
    viewer = await viewer_of(request)
    fields = await checked_form(request, viewer)
    text = fields.get("playbook", "")
    if not text.strip():
        raise InvalidArgumentError("the playbook field is empty", where="playbook field",
                                   fix="paste a playbook's YAML into the form")
    if len(text) > MAX_PASTED:
        raise InvalidArgumentError(f"the pasted playbook has {len(text)} characters, more than {MAX_PASTED}",
                                   where="playbook field",
                                   fix="validate a larger file with `noetl validate FILE`")
    return _validate_page(viewer, text, await planning_of(request).validate(text, PASTED_FILE))
