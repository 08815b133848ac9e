"""Secrets out of everything a diagnosis shows or sends (spec section 10): by exact value (every credential
value known to the process), by key name, and passwords written into URLs (`scheme://user:pw@host`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from agents.diagnosis.model import Diagnosis
from engine.tools.redact import MASK, redact

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_KEY_VALUE_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<pw>[^\s'\"]+)",
                                 re.IGNORECASE)


def scrub_text(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    return _KEY_VALUE_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}", text)


def _texts(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_texts(v) for v in value]
    return value


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of `value` (plain JSON data) with every secret masked."""
    return _texts(redact(value, [s for s in secrets if isinstance(s, str) and len(s) >= 4]))


def scrub_diagnosis(diagnosis: Diagnosis, secrets: Iterable[str] = ()) -> Diagnosis:
    data = diagnosis.model_dump(mode="json")
    clean = scrub(data, secrets)
    return diagnosis if clean == data else Diagnosis.model_validate(clean)
