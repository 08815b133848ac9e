"""Riding through an outage of Postgres, NATS or the API server: one notice, a bounded wait, one error.

A command wraps each call that talks to a server in `await rider(call)`. When the call fails because
the server is away (`outage_of` says which errors mean that), the rider prints one line on stderr,
`waiting for Postgres at ...: Connection refused (up to 60 s)`, and calls again until it succeeds, then
goes on silently. If the server stays away for longer than `wait_s` (NOETL_OUTAGE_WAIT_S) it raises
UnreachableError, which the command line prints as one line and exits 3 with (noetl.cli).

A long call (following an execution to its end) takes a `probe`: a short call that answers once the
server is back; the rider retries the probe under the deadline, then the long call without one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from engine.errors import NoetlError

T = TypeVar("T")

DEFAULT_WAIT_S = 60.0
PAUSE_S = 0.25  # between two calls while a server is away
STEADY_S = 1.0  # a call that fails again this soon after the probe answered: the same outage goes on
SERVER_AWAY = (502, 503, 504)  # the API's 503: its Postgres or NATS is unreachable (docs/api.md)


class UnreachableError(NoetlError):
    """Postgres, NATS or the API server stayed unreachable for longer than the command waits."""

    code = "unreachable"


@dataclass(frozen=True, slots=True)
class Outage:
    """What is away, where (None when unknown), why in a few words, the fix, and whether the failed
    call surely had no effect (so that a call that is not safe to repeat may still be made again)."""

    what: str
    where: str | None
    reason: str
    fix: str | None
    no_effect: bool = False


def outage_of(exc: BaseException) -> Outage | None:
    """The outage an error reports, or None when it is any other error (a bad request, a refusal)."""
    # here, not at module level: the command modules import this one, and `--help` must stay light
    from control_plane.client import ClientError, ServerUnreachableError
    from control_plane.errors import DatabaseUnavailableError
    from engine.bus.jetstream import BusError

    if isinstance(exc, DatabaseUnavailableError) and exc.transient:
        return Outage("Postgres", exc.where, str(exc.details.get("reason") or exc.message), exc.fix)
    if isinstance(exc, BusError) and exc.transient:
        return Outage("NATS", None, exc.message, exc.fix)
    if isinstance(exc, ServerUnreachableError):
        reason = str(exc.details.get("reason") or exc.message)
        return Outage("the NoETL server", exc.details.get("url"), reason, exc.fix,
                      no_effect=exc.details.get("reached") is False)
    if isinstance(exc, ClientError) and exc.status in SERVER_AWAY:
        parts = urlsplit(exc.url)
        where = f"{parts.scheme}://{parts.netloc}" if parts.netloc else None
        return Outage("the NoETL server", where, exc.message, exc.fix)
    return None


class Rider:
    """Calls through outages of up to `wait_s` seconds each; `notice` prints the one line per outage.

    Creating one holds back the Postgres pool's own warnings (the notice says it once instead)."""

    def __init__(self, wait_s: float = DEFAULT_WAIT_S, *, notice: Callable[[str], None] | None = None,
                 pause_s: float = PAUSE_S) -> None:
        self.wait_s = wait_s
        self.pause_s = pause_s
        self._notice = notice or _to_stderr
        from control_plane.store.db import quiet_pool_warnings

        quiet_pool_warnings()

    async def __call__(self, call: Callable[[], Awaitable[T]], *,
                       probe: Callable[[], Awaitable[object]] | None = None,
                       repeatable: bool = True, hint: str | None = None) -> T:
        """`await call()`, again while a server is away. `repeatable=False`: only after a failure that
        surely had no effect (no connection was made). `hint` is added to the error's fix."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # of the outage going on
        answered = float("-inf")  # when the probe last answered
        while True:
            try:
                return await call()
            except Exception as exc:
                outage = self._outage(exc, repeatable)
            now = loop.time()
            if deadline is None or now - answered > STEADY_S:  # a new outage: say so once
                deadline = now + self.wait_s
                self._announce(outage)
            if probe is None:
                return await self._until(deadline, call, outage, repeatable, hint)
            await self._until(deadline, probe, outage, True, hint)
            answered = loop.time()

    def _outage(self, exc: Exception, repeatable: bool) -> Outage:
        outage = outage_of(exc)
        if outage is None or not (repeatable or outage.no_effect):
            raise exc
        return outage

    def _announce(self, outage: Outage) -> None:
        if self.wait_s > 0:
            at = f" at {outage.where}" if outage.where else ""
            self._notice(f"waiting for {outage.what}{at}: {outage.reason} (up to {self.wait_s:g} s)")

    async def _until(self, deadline: float, call: Callable[[], Awaitable[T]], outage: Outage,
                     repeatable: bool, hint: str | None) -> T:
        """`call()` again after each pause until it succeeds; UnreachableError at the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise self._unreachable(outage, hint)
            await asyncio.sleep(min(self.pause_s, left))
            try:
                async with asyncio.timeout_at(deadline) as window:
                    return await call()
            except TimeoutError:
                if not window.expired():
                    raise
                raise self._unreachable(outage, hint) from None
            except Exception as exc:
                outage = self._outage(exc, repeatable)

    def _unreachable(self, outage: Outage, hint: str | None) -> UnreachableError:
        at = f" at {outage.where}" if outage.where else ""
        fix = "; ".join(part for part in (outage.fix, hint, "NOETL_OUTAGE_WAIT_S sets how long commands "
                                          "wait for a server") if part)
        return UnreachableError(f"{outage.what}{at} is still unreachable after {self.wait_s:g} s: "
                                f"{outage.reason}", fix=fix)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
