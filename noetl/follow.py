"""Following an execution to its end through outages, or until --timeout ends first (one line, exit 4)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control_plane.client import NoetlClient
    from control_plane.stack import Stack
    from engine.protocol.events import Event
    from noetl.outage import Rider
    from noetl.session import Session

EXIT_RUNNING = 4  # still pending or running (noetl status; run and execute --wait after --timeout)
ENDED = ("completed", "failed", "cancelled")


def hint(execution_id: str) -> str:
    return f"the execution may still be running: `noetl status {execution_id}` once it is back"


def report_timeout(execution_id: str, timeout_s: float | None, status: str) -> None:
    """The one line of a --timeout that ended before the execution did."""
    within = f" within {timeout_s:g} s" if timeout_s is not None else ""
    print(f"execution {execution_id} did not finish{within}; it is still {status} "
          f"(follow it with `noetl status {execution_id}`)", file=sys.stderr, flush=True)


async def follow_local(session: Session, rider: Rider, execution_id: str, timeout_s: float | None,
                       on_event: Callable[[Event], None], history: list[Event] | None = None
                       ) -> dict[str, Any]:
    """The summary once the execution ended, or (its status pending or running) when `timeout_s` ended
    first; reads the event log, going on after the last event seen when an outage interrupted it (or
    after the events of `history`, those another follower showed already)."""
    followed: list[Event] = [] if history is None else history

    async def wait(stack: Stack) -> dict[str, Any]:
        assert stack.executions is not None
        return await stack.executions.wait(execution_id, on_event=on_event, history=followed)

    async def probe(stack: Stack) -> object:
        assert stack.executions is not None
        return await stack.executions.get(execution_id)

    try:
        async with asyncio.timeout(timeout_s) as window:
            return await rider(lambda: session.call(wait), probe=lambda: session.call(probe),
                               hint=hint(execution_id))
    except TimeoutError:
        if not window.expired():
            raise
    return partial_summary(execution_id, followed)


def partial_summary(execution_id: str, history: list[Event]) -> dict[str, Any]:
    """The summary of the events followed when --timeout ended before the execution did."""
    from control_plane.stack import resolve_ref
    from engine.runtime.summary import summarize

    summary = summarize(execution_id, history, resolve_ref)
    if summary["status"] == "unknown":  # not picked up by an orchestrator yet
        summary["status"] = "pending"
    return summary


async def follow_remote(client: NoetlClient, rider: Rider, execution_id: str, timeout_s: float | None,
                        on_item: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The same through the API: its event stream (resumed after the last event seen), then the
    execution as the server reads it."""
    seq = 0

    async def stream() -> None:
        nonlocal seq
        async for item in client.stream(execution_id, after_seq=seq):
            seq = max(seq, int(item.get("seq") or seq))
            on_item(item)

    try:
        async with asyncio.timeout(timeout_s) as window:
            await rider(stream, probe=lambda: client.execution(execution_id), hint=hint(execution_id))
    except TimeoutError:
        if not window.expired():
            raise
    return await rider(lambda: client.execution(execution_id), hint=hint(execution_id))
