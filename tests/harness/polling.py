"""Waiting in tests without sleeping blindly: poll a condition until it holds, with a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def poll(check: Callable[[], Any], *, timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Call `check` (sync or async) until it returns something truthy, and return that; AssertionError
    naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def wait_for(check: Callable[[], Any], *, timeout_s: float = 30.0, what: str = "condition",
             detail: Callable[[], Any] | None = None) -> Any:
    """`poll` for code without an event loop: call `check` until it returns something truthy, and
    return that; AssertionError naming `what` (and `detail()`, e.g. what is left) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}"
                                 + (f": {detail()!r}" if detail is not None else ""))
        time.sleep(0.05)
