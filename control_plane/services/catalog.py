"""Registering playbooks: validated first (located errors), then stored as the path's next version."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

from control_plane.errors import ControlPlaneError, NotFoundError
from control_plane.services.triggers import Created, TriggerService
from control_plane.store import Store
from control_plane.store.catalog import PlaybookSummary, PlaybookVersion
from control_plane.triggers.definition import with_declared_checks
from engine.dsl.diagnostics import Diagnostic
from engine.net.validate import validate_text


class PlaybookInvalidError(ControlPlaneError):
    """A playbook that does not validate: it is never registered nor run."""

    code = "playbook_invalid"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        lines = "\n".join(d.format() for d in diagnostics if d.severity == "error")
        super().__init__(f"the playbook does not validate:\n{lines}", where=diagnostics[0].file
                         if diagnostics else None, fix="fix the errors listed (noetl validate FILE)")


@dataclass(frozen=True)
class Registered:
    path: str
    version: int
    warnings: list[Diagnostic]
    triggers: list[Created] = field(default_factory=list)  # those it declares (docs/triggers.md)


class CatalogService:
    def __init__(self, store: Store, triggers: TriggerService | None = None) -> None:
        self.store = store
        self.triggers = triggers or TriggerService(store)

    async def register(self, text: str, file: str = "<playbook>", *, actor: str | None = None) -> Registered:
        """Validate, then store as the next version of its catalog path, with the triggers it declares
        (those it declared before and no more are deleted)."""
        result = with_declared_checks(validate_text(text, file))
        if result.errors or result.playbook is None:
            raise PlaybookInvalidError(result.errors or result.diagnostics)
        playbook = result.playbook
        path = playbook.metadata.catalog_path
        await self.triggers.check_declared(path, playbook)
        canonical = playbook.model_dump(mode="json", by_alias=True, exclude_none=True)
        version = await self.store.catalog.register(path, text, canonical)
        triggers = await self.triggers.declare(path, playbook, actor=actor)
        return Registered(path, version, result.warnings, triggers)

    async def list(self, prefix: str | None = None) -> list[PlaybookSummary]:
        """The latest version of every path (starting with `prefix`), by path."""
        return await self.store.catalog.list(prefix)

    async def get(self, path: str, version: int | None = None) -> PlaybookVersion:
        """One version of a path (its latest when None); NotFoundError when not stored."""
        return await self.store.catalog.get(path, version)

    async def versions(self, path: str) -> builtins.list[PlaybookSummary]:
        """Every version of a path, oldest first; NotFoundError when the path has none."""
        found = await self.store.catalog.versions(path)
        if not found:
            raise NotFoundError(f"playbook '{path}' is not in the catalog", where="catalog",
                                fix="register it first, or list the catalog to see the stored paths")
        return found

    async def delete(self, path: str, version: int | None = None) -> int:
        """Delete one version, or every version of the path; returns how many were deleted."""
        return await self.store.catalog.delete(path, version)
