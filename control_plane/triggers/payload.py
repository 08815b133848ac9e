"""A firing's payload: the trigger's payload template rendered against what fired it (docs/triggers.md).

The context has `trigger` (id, name, kind, path), `firing` (id, scheduled_at) and what fired it:
`upstream` (an ended execution: execution_id, path, status, result), `message` (a NATS message: subject,
data, headers, id) or `request` (a webhook: body, headers, delivery). Without a template the payload is
that object under its name (e.g. `{"upstream": {...}}`); a time trigger's is `{}`.
"""

from __future__ import annotations

import json
from typing import Any

from control_plane.triggers.errors import TriggerSpecError
from engine.dsl.templates import TemplateRenderer
from engine.errors import EngineError

_RENDERER = TemplateRenderer()
EVENT_KEYS = ("upstream", "message", "request")


def decoded(data: bytes) -> Any:
    """A message or request body as JSON when it is JSON, else as text (bytes that are not UTF-8: hex)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data.hex()
    try:
        return json.loads(text)
    except ValueError:
        return text


def render_payload(template: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The payload; TriggerSpecError when the template fails or does not give an object."""
    if not template:
        return {key: context[key] for key in EVENT_KEYS if key in context}
    try:
        value = _RENDERER.render(template, context, where="payload").value
    except (EngineError, ValueError, TypeError) as exc:
        raise TriggerSpecError(f"the payload template failed: {exc}", where="payload",
                               fix="fix the template; it sees trigger, firing and " +
                                   ", ".join(EVENT_KEYS)) from None
    if not isinstance(value, dict):
        raise TriggerSpecError(f"the payload template gave {type(value).__name__}, not an object",
                               where="payload",
                               fix='write the payload as an object, e.g. {"day": "{{ ... }}"}')
    return json.loads(json.dumps(value, default=str))
