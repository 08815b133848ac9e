"""What the runtime needs from the outside, as protocols: the event log and the credentials.

The control plane's Postgres store implements them; the CLI and the server wire them in. The engine
never imports the control plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from engine.protocol.commands import StartChild
from engine.protocol.events import Event
from engine.tools.base import CredentialResolver

__all__ = ["ChildStarter", "CredentialResolver", "EventLog", "ExecutionRecord"]


class ExecutionRecord(Protocol):
    execution_id: str
    playbook_path: str
    playbook_version: int
    status: str
    parent_execution_id: str | None


class EventLog(Protocol):
    """The durable, append-only log of every execution (Postgres)."""

    async def append(self, events: Sequence[Event]) -> list[Event]:
        """Append in order, in one transaction; an event whose idempotency key is already stored is
        skipped. Returns the events actually stored, with their `seq`."""
        ...

    async def record(self, events: Sequence[Event]) -> int:
        """`append` for a writer that needs no copies back: returns how many were stored."""
        ...

    async def events(self, execution_id: str, *, after_seq: int = 0,
                     limit: int | None = None) -> list[Event]:
        ...

    async def create_execution(self, execution_id: str, *, playbook_path: str, playbook_version: int,
                               playbook_text: str, payload: dict[str, Any],
                               parent_execution_id: str | None = None,
                               parent_step: str | None = None) -> bool:
        """True if created now; False if it exists with the same playbook and parent (a retry)."""
        ...

    async def set_status(self, execution_id: str, status: str) -> None:
        ...

    async def active_executions(self) -> list[str]:
        """Executions without a terminal event (to resume after an orchestrator restart)."""
        ...


class ChildStarter(Protocol):
    """Starts the child execution of a `kind: playbook` step (the control plane's execution service)."""

    async def start_child(self, command: StartChild) -> None:
        """Create and start it (idempotent on command.child_execution_id); raise LookupError when the
        catalog has no such playbook."""
        ...
