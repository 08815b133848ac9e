"""The operations the commands need, and the one place that chooses who does them: this machine's
services in this process (noetl.local), or a NoETL server's API when NOETL_SERVER_URL is set (noetl.remote).

A command has one body: `call(lambda backend: backend.OPERATION(...))`, then it prints what came back.
Both backends return the same JSON-shaped values and refuse in the same way (noetl.refusal.Refusal:
the lines for stderr and the exit code), so the output does not depend on where the work was done.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import typer

from noetl.refusal import Refusal
from noetl.settings import api_token, server_url

if TYPE_CHECKING:
    from agents.diagnosis.model import Diagnosis
    from noetl.outage import Rider

T = TypeVar("T")


class Backend(Protocol):
    """What the commands ask of NoETL. Ids, paths and options go in; JSON-shaped values come out."""

    async def __aenter__(self) -> Backend: ...

    async def __aexit__(self, *exc: object) -> None: ...

    # the catalog: `warnings` of a registration are printable lines
    async def register(self, text: str, file: str) -> dict[str, Any]: ...

    async def catalog_list(self, prefix: str | None) -> list[dict[str, Any]]: ...

    async def catalog_get(self, path: str, version: int | None) -> dict[str, Any]: ...

    # credentials: never their values
    async def credential_set(self, name: str, type_: str, fields: dict[str, Any],
                             description: str | None) -> dict[str, Any]: ...

    async def credential_list(self) -> list[dict[str, Any]]: ...

    async def credential_delete(self, name: str) -> None: ...

    # API tokens: the token itself only from token_create
    async def token_create(self, name: str, role: str) -> dict[str, Any]: ...

    async def token_list(self) -> list[dict[str, Any]]: ...

    async def token_revoke(self, token_id: str) -> None: ...

    # triggers (docs/triggers.md): a webhook's secret only from trigger_create
    async def trigger_create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def trigger_list(self, path: str | None) -> list[dict[str, Any]]: ...

    async def trigger_show(self, trigger_id: str, limit: int) -> dict[str, Any]: ...

    async def trigger_set_paused(self, trigger_id: str, paused: bool) -> dict[str, Any]: ...

    async def trigger_delete(self, trigger_id: str) -> None: ...

    # executions: reads ride through outages with `rider`
    async def execution(self, execution_id: str, rider: Rider) -> dict[str, Any]: ...

    async def events(self, execution_id: str, rider: Rider) -> list[dict[str, Any]]: ...

    async def cancel(self, execution_id: str) -> None: ...

    async def execute(self, path: str, version: int | None, payload: dict[str, Any] | None, *, merge: bool,
                      wait: bool, quiet: bool, timeout: float | None, rider: Rider
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]: ...

    # proposals and the overlays they apply (`state`: one or several, separated by commas)
    async def proposals(self, state: str | None, path: str | None, limit: int) -> list[dict[str, Any]]: ...

    async def proposal(self, proposal_id: str) -> dict[str, Any]: ...

    async def propose(self, draft: dict[str, Any]) -> dict[str, Any]: ...

    async def proposal_decide(self, proposal_id: str, decision: str, reason: str) -> dict[str, Any]: ...

    async def policies(self, path: str, step: str | None) -> dict[str, Any]: ...

    async def watch_proposals(self, once: bool, diagnose: bool, poll: float, measure_after: int
                              ) -> list[str]: ...

    # the chat over the event log (`use_similar`: only where it runs in this process)
    async def ask(self, message: str, conversation_id: str | None, *,
                  use_similar: bool) -> dict[str, Any]: ...

    # diagnosis and similar past failures
    async def diagnose(self, execution_id: str, *, use_llm: bool, use_similar: bool) -> Diagnosis: ...

    async def similar(self, execution_id: str, step: str | None, limit: int) -> list[dict[str, Any]]: ...

    async def search(self, text: str, limit: int) -> list[dict[str, Any]]: ...

    # insights
    async def insights(self, path: str | None, since: str | None, limit: int) -> dict[str, Any]: ...


def open_backend() -> Backend:
    """The REST backend when NOETL_SERVER_URL is set (with NOETL_TOKEN), else the local one."""
    url = server_url()  # each backend imported only when chosen: the command modules import this one
    if url is None:
        from noetl.local import LocalBackend

        return LocalBackend()
    from noetl.remote import RestBackend

    return RestBackend(url, api_token())


def call(action: Callable[[Backend], Awaitable[T]]) -> T:
    """`action(backend)` on the chosen backend; a refusal prints its lines on stderr and exits with its
    code."""
    import asyncio

    async def run() -> T:
        async with open_backend() as backend:
            return await action(backend)

    try:
        return asyncio.run(run())
    except Refusal as refusal:
        for line in refusal.lines:
            print(line, file=sys.stderr)
        raise typer.Exit(refusal.code) from None
