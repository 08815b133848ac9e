"""A command's --payload option: a JSON object, or one line on stderr and exit 2."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

EXIT_INVALID = 2


def parse_payload(payload: str | None) -> dict[str, Any]:
    if not payload:
        return {}
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as exc:
        print(f"--payload is not valid JSON: {exc.msg} at character {exc.pos}", file=sys.stderr)
        raise typer.Exit(EXIT_INVALID) from None
    if not isinstance(value, dict):
        print(f"--payload must be a JSON object such as '{{\"x\": 1}}', got {type(value).__name__}",
              file=sys.stderr)
        raise typer.Exit(EXIT_INVALID)
    return value
