"""Several commands or events in one bus message: how many go together (the wire's size bounds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def pack(items: Sequence[T], size: Callable[[T], int], *, max_items: int, max_bytes: int) -> list[list[T]]:
    """`items` in order, in groups of at most `max_items` whose sizes (plus a separator byte each) add
    up to at most `max_bytes`; an item larger than that goes alone."""
    groups: list[list[T]] = []
    used = 0
    for item in items:
        length = size(item) + 1
        if not groups or len(groups[-1]) >= max_items or used + length > max_bytes:
            groups.append([])
            used = 2  # the array's brackets
        groups[-1].append(item)
        used += length
    return groups
