"""/api/executions/{id}/similar and /api/similar: past failures like an execution's, or like a text.

The search itself is the agents' (agents.embeddings.similar.SimilarFailures): the control plane sits below
the agents, so the process that serves the API puts a `SimilarSearch` in `app.state.similar` (the
`noetl` entry point does, with the embedded index or NOETL_QDRANT_URL). Without one: 503.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from control_plane.api.auth import require
from control_plane.api.problems import problem, responses
from control_plane.api.routing import AuthorizedRoute
from control_plane.schemas.similar import SimilarFailureItem, SimilarPage

router = APIRouter(tags=["similar failures"], route_class=AuthorizedRoute)

ExecutionId = Annotated[str, Path(min_length=1, max_length=200, examples=["2241043291894150228"],
                                   description="the execution id: the decimal digits of a positive 64-bit "
                                               "integer (spec 13)")]
Limit = Annotated[int, Query(ge=1, le=100, description="how many past failures")]


class SimilarResult(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class SimilarSearch(Protocol):
    """What the routes call (agents.embeddings.similar.SimilarFailures satisfies it)."""

    async def for_execution(self, execution_id: str, step: str | None = None,
                            limit: int = 5) -> list[Any]: ...

    async def search(self, text: str, limit: int = 5) -> list[Any]: ...


def _unavailable() -> JSONResponse:
    return problem(503, code="similar_unavailable", detail="similar-failure search is not enabled in this "
                   "server", where="app.state.similar",
                   fix="start the server with the `noetl` command (it enables the embeddings index)")


def _page(results: list[Any]) -> SimilarPage:
    return SimilarPage(items=[SimilarFailureItem(**(r.to_dict() if hasattr(r, "to_dict") else dict(r)))
                              for r in results])


@router.get("/api/executions/{id}/similar", response_model=SimilarPage,
            summary="Past failures like this execution's, best first, with what happened next",
            responses=responses(401, 403, 404, 422, 503))
async def similar_to_execution(request: Request, _: Annotated[Any, require("viewer")], id: ExecutionId,
                               step: Annotated[str | None, Query(max_length=200)] = None,
                               limit: Limit = 5) -> Any:
    search: SimilarSearch | None = getattr(request.app.state, "similar", None)
    if search is None:
        return _unavailable()
    return _page(await search.for_execution(id, step=step, limit=limit))


@router.get("/api/search", response_model=SimilarPage,
            summary="Past failures like a text (an error message, a description)",
            responses=responses(401, 403, 422, 503))
async def similar_to_text(request: Request, _: Annotated[Any, require("viewer")],
                          q: Annotated[str, Query(min_length=1, max_length=2000, description="the text")],
                          limit: Limit = 5) -> Any:
    search: SimilarSearch | None = getattr(request.app.state, "similar", None)
    if search is None:
        return _unavailable()
    return _page(await search.search(q, limit=limit))
