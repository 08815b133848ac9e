"""What every request model shares: frozen, no unknown keys, and only text the store can hold."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def unstorable(value: Any, where: str = "") -> str | None:
    """Where `value` holds something Postgres cannot store (NUL, lone surrogates, NaN), else None."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where or 'a text'} contains a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where or 'a text'} contains a lone surrogate, which is not valid Unicode"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'a number'} is {value}, which JSON cannot hold"
    if isinstance(value, BaseModel):  # a nested model (a proposal's target): each of its fields
        for name in type(value).model_fields:
            problem = unstorable(getattr(value, name), f"{where}.{name}" if where else name)
            if problem:
                return problem
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable(key, f"the key {where + '.' if where else ''}{key!s:.40}") or \
                unstorable(item, f"{where + '.' if where else ''}{key!s:.40}")
            if problem:
                return problem
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = unstorable(item, f"{where}[{index}]")
            if problem:
                return problem
    return None


class RequestModel(BaseModel):
    """A request body: validated at the edge, trusted inside."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _storable(self) -> RequestModel:
        for name in type(self).model_fields:
            problem = unstorable(getattr(self, name), name)
            if problem:
                raise ValueError(f"{problem}; send plain UTF-8 text and finite numbers")
        return self
