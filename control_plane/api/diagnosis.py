"""/api/executions/{id}/diagnosis: why an execution failed (or was slow), and what to change.

The diagnosis itself is the agents' (agents.diagnosis.service.DiagnosisService): the control plane sits
below the agents, so the process that serves the API puts a `Diagnoser` in `app.state.diagnosis` (the
`noetl` entry point does). Without one: 503. The body is the `Diagnosis` model as JSON (the same document
`noetl why --json` prints); an unknown execution is 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Request

from control_plane.api.auth import require
from control_plane.api.problems import problem, responses
from control_plane.api.routing import AuthorizedRoute

router = APIRouter(tags=["diagnosis"], route_class=AuthorizedRoute)

ExecutionId = Annotated[str, Path(min_length=1, max_length=200, examples=["2241043291894150228"],
                                   description="the execution id: the decimal digits of a positive 64-bit "
                                               "integer (spec 13)")]


class Diagnoser(Protocol):
    """What the route calls (agents.diagnosis.service.DiagnosisService satisfies it)."""

    async def diagnose(self, execution_id: str) -> Any: ...


@router.get("/api/executions/{id}/diagnosis", response_model=dict[str, Any],
            summary="Why an execution failed: root cause, transience, evidence, similar failures, fixes",
            responses=responses(401, 403, 404, 422, 503))
async def diagnosis(request: Request, _: Annotated[Any, require("viewer")], id: ExecutionId) -> Any:
    diagnoser: Diagnoser | None = getattr(request.app.state, "diagnosis", None)
    if diagnoser is None:
        return problem(503, code="diagnosis_unavailable", detail="diagnosis is not enabled in this server",
                       where="app.state.diagnosis",
                       fix="start the server with the `noetl` command (it enables the diagnosis)")
    found = await diagnoser.diagnose(id)  # NotFoundError -> 404
    return found.model_dump(mode="json") if hasattr(found, "model_dump") else dict(found)
