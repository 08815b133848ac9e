"""The one module that renders the console's HTML: Jinja2 templates (autoescaped) into responses with the
console's security headers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).resolve().parent / "templates"
# no inline script or style: scripts and styles come only from /ui/static (with the page's forms posting
# only to this origin, and no framing)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


_CITATION = re.compile(r"\[event ([0-9a-f]{8,64})\]")
_EXECUTION = re.compile(r"\bexecution (\d{6,20})\b")


def cited(answer: str, execution_id: str | None) -> Markup:
    """A chat answer as HTML: escaped, each execution id a link to its page and each cited event a link
    to its row on the page of the execution the answer is about."""
    html = str(escape(answer))
    html = _EXECUTION.sub(lambda m: f'execution <a href="/ui/executions/{m.group(1)}">{m.group(1)}</a>', html)
    if execution_id:
        html = _CITATION.sub(lambda m: f'<a class="cite" href="/ui/executions/{execution_id}#event-'
                                       f'{m.group(1)}">[event {m.group(1)[:12]}]</a>', html)
    return Markup(html)


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(("html",), default=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
# the pages of the navigation, in order: (key, URL, label); chat joins here
_env.globals["nav"] = (("executions", "/ui/executions", "Executions"),
                      ("catalog", "/ui/catalog", "Catalog"),
                      ("pools", "/ui/pools", "Pools"),
                      ("insights", "/ui/insights", "Insights"),
                      ("proposals", "/ui/proposals", "Proposals"),
                      ("triggers", "/ui/triggers", "Triggers"),
                      ("chat", "/ui/chat", "Ask"))
_env.filters["when"] = when
_env.filters["as_json"] = as_json
_env.filters["cited"] = cited


def page(template: str, context: Mapping[str, Any], *, status: int = 200,
         headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """`template` rendered with `context` as an HTML response of `status`."""
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
