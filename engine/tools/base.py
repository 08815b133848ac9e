"""What every tool sees and returns: a rendered call in, a result envelope out (spec sections 3 and 9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.protocol.results import ResultEnvelope


class MissingCredentialError(LookupError):
    """The named credential is not stored."""

    def __init__(self, name: str) -> None:
        super().__init__(f"credential '{name}' is not stored; create it with "
                         f"`noetl credential set {name} --type TYPE --data JSON`")
        self.name = name


@dataclass(frozen=True, slots=True)
class Credential:
    name: str
    type: str  # postgres, http, snowflake, oauth2, ...
    data: Mapping[str, Any] = field(repr=False)


class CredentialResolver(Protocol):
    async def get(self, name: str) -> Credential:
        """The credential's decrypted fields; raises MissingCredentialError."""
        ...


class NoCredentials:
    """A resolver with nothing stored: every lookup is a clear missing-credential error."""

    async def get(self, name: str) -> Credential:
        raise MissingCredentialError(name)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One attempt of one task, with its configuration already rendered."""

    kind: str
    config: Mapping[str, Any]  # canonical keys of the tool (kind/name/spec/set/output removed)
    input: Mapping[str, Any] = field(default_factory=dict)  # tool input merged over the step input
    context: Mapping[str, Any] = field(default_factory=dict)  # read-only render context, no secrets
    credentials: CredentialResolver = field(default_factory=NoCredentials)
    timeout_s: float | None = None
    execution_id: str = ""
    step: str = ""
    task: str = ""
    attempt: int = 1
    loop_index: int | None = None
    work_dir: Path | None = None  # a scratch directory for this execution (artifacts, temp files)


class Tool(Protocol):
    kind: str

    async def run(self, call: ToolCall) -> ResultEnvelope:
        """Never raises for user-caused failures: they are error envelopes with a classified kind."""
        ...
