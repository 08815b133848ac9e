"""/ui/static/{name}: the console's stylesheet and script, read once from static/ (nothing else is served)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response

from control_plane.console.session import ConsoleRoute
from control_plane.errors import NotFoundError
from control_plane.services.sessions import CONSOLE_ROOT

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_FILES = {p.name: (p.read_bytes(), _TYPES[p.suffix]) for p in sorted(STATIC.iterdir()) if p.suffix in _TYPES}


@router.get(f"{CONSOLE_ROOT}/static/{{name}}")
async def static(name: str) -> Response:
    found = _FILES.get(name)
    if found is None:
        raise NotFoundError(f"the console has no static file '{name[:100]}'", where="URL",
                            fix=f"one of {', '.join(sorted(_FILES))}")
    body, media = found
    return Response(body, media_type=media, headers={"Cache-Control": "public, max-age=3600",
                                                     "X-Content-Type-Options": "nosniff"})
