"""GET /openapi.json and /docs, behind a viewer token (FastAPI's unauthenticated ones are off)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from control_plane.api.auth import require
from control_plane.api.problems import responses
from control_plane.api.routing import AuthorizedRoute

router = APIRouter(tags=["meta"], route_class=AuthorizedRoute)


@router.get("/openapi.json", summary="This API's OpenAPI document",
            responses={200: {"description": "the OpenAPI 3.1 document",
                             "content": {"application/json": {"schema": {"type": "object"}}}},
                       **responses(401, 403)}, response_class=JSONResponse)
async def openapi(request: Request, _: Annotated[Any, require("viewer")]) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
async def docs(request: Request, _: Annotated[Any, require("viewer")]) -> HTMLResponse:
    # the page's own request for /openapi.json needs the token too: Swagger UI's Authorize button
    return get_swagger_ui_html(openapi_url="/openapi.json", title="NoETL API",
                               swagger_ui_parameters={"persistAuthorization": True})
