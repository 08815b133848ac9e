"""Values from drivers and user code made JSON-friendly before they enter a result envelope.

Conversions (the same for every tool, so a playbook sees one shape whatever produced the value):
decimals → int when integral else float; NaN and ±infinity → null (JSON has neither); datetimes, dates
and times → ISO-8601 strings; timedeltas → seconds (float); bytes → base64 text; UUIDs, IP addresses,
paths → their text; enums → their value; sets → lists (sorted when the items sort); tuples → lists;
mappings → objects with text keys; numpy-like values (`tolist()`), pydantic models (`model_dump`) and
dataclasses → their plain data. Anything else is an error in strict mode (naming where in the value it
sits) and its `str()` in lenient mode. Standard library only: the python runner imports this module.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import ipaddress
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

_PLAIN = (str, int, bool, type(None))


class UnserialisableValue(TypeError):
    """A value with no JSON form; `where` is its place in the whole value, e.g. result['rows'][3]."""

    def __init__(self, type_name: str, where: str) -> None:
        self.type_name = type_name
        self.where = where
        super().__init__(f"{where} is a {type_name}, which has no JSON form; convert it (for example "
                         f"with str(...) or a dict) before returning it")


class _Unserialisable(Exception):
    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.path: list[str] = []


def to_json_value(value: Any, *, strict: bool = True, root: str = "result") -> Any:
    """`value` as plain JSON data (dict, list, str, int, float, bool, None); see the module docstring."""
    try:
        return _convert(value, strict, set())
    except _Unserialisable as exc:
        raise UnserialisableValue(exc.type_name, root + "".join(reversed(exc.path))) from None


def _convert(value: Any, strict: bool, active: set[int]) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return _container(value, strict, active, mapping=True)
    if isinstance(value, (list, tuple)):
        return _container(value, strict, active, mapping=False)
    return _scalar(value, strict, active)


def _container(value: Any, strict: bool, active: set[int], *, mapping: bool) -> Any:
    marker = id(value)
    if marker in active:
        raise _Unserialisable("circular reference")
    active.add(marker)
    try:
        if mapping:
            out: dict[str, Any] = {}
            for key, item in value.items():
                try:
                    out[_key(key)] = _convert(item, strict, active)
                except _Unserialisable as exc:
                    exc.path.append(f"[{key!r}]")
                    raise
            return out
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(_convert(item, strict, active))
            except _Unserialisable as exc:
                exc.path.append(f"[{index}]")
                raise
        return items
    finally:
        active.discard(marker)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return "true" if key is True else "false" if key is False else "null"
    return str(key)


def _scalar(value: Any, strict: bool, active: set[int]) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (uuid.UUID, PurePath, ipaddress.IPv4Address, ipaddress.IPv6Address,
                          ipaddress.IPv4Network, ipaddress.IPv6Network,
                          ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return str(value)
    if isinstance(value, enum.Enum):
        return _convert(value.value, strict, active)
    if isinstance(value, (set, frozenset)):
        items = list(value)
        try:
            items.sort()
        except TypeError:
            pass
        return _container(items, strict, active, mapping=False)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _container(fields, strict, active, mapping=True)
    if hasattr(value, "model_dump") and callable(value.model_dump):  # pydantic models
        return _convert(value.model_dump(mode="json"), strict, active)
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return _convert(value.tolist(), strict, active)
    if _is_undefined(value):
        return None
    if strict:
        raise _Unserialisable(f"{type(value).__module__}.{type(value).__qualname__}"
                              if type(value).__module__ != "builtins" else type(value).__qualname__)
    return str(value)


def _is_undefined(value: Any) -> bool:
    """A Jinja2 undefined value (a template name that was not set) is null, without importing jinja2."""
    return any(c.__name__ == "Undefined" and c.__module__.startswith("jinja2")
               for c in type(value).__mro__)
