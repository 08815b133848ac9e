"""Catalog tools: list and search playbooks, get one, validate a text (locally), register (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from engine.dsl.diagnostics import Diagnostic
from engine.net.validate import validate_text
from mcp_server.api import Api
from mcp_server.tools.base import READ, WRITE, Out

PlaybookPath = Annotated[str, Field(min_length=1, max_length=1000, description="the playbook's catalog path")]
Version = Annotated[int | None, Field(ge=1, description="a version; default: the latest")]
PlaybookText = Annotated[str, Field(min_length=1, max_length=4 * 1024 * 1024,
                                    description="the playbook's YAML")]


class PlaybookSummary(Out):
    path: str
    version: int
    name: str | None = None
    description: str | None = None
    tags: list[str] = []
    labels: dict[str, Any] = {}
    created_at: str | None = None


class PlaybookList(Out):
    items: list[PlaybookSummary]
    total: int = Field(description="how many playbooks matched (before `limit`)")


class PlaybookDoc(PlaybookSummary):
    content: str = Field(description="the YAML exactly as registered")
    versions: list[int] = Field(default_factory=list, description="every version of the path, oldest first")


class Located(Out):
    """A problem placed in the playbook text."""

    line: int
    column: int
    path: str
    code: str
    message: str
    severity: str = "error"


class ValidationReport(Out):
    valid: bool
    errors: list[Located]
    warnings: list[Located]
    name: str | None = None
    path: str | None = Field(default=None, description="the catalog path it would register at")
    steps: list[str] = Field(default_factory=list, description="the steps, in YAML order (when valid)")


class Registered(Out):
    path: str
    version: int
    warnings: list[dict[str, Any]] = []
    triggers: list[dict[str, Any]] = []  # those the playbook declares; a new webhook's secret shown once


def located(diagnostics: list[Diagnostic]) -> list[Located]:
    return [Located(line=d.line, column=d.column, path=d.path, code=d.code, message=d.message,
                    severity=d.severity) for d in diagnostics]


def _matches(item: dict[str, Any], query: str) -> bool:
    words = query.lower().split()
    text = " ".join(str(item.get(k) or "") for k in ("path", "name", "description")).lower()
    text += " " + " ".join(str(t) for t in item.get("tags") or []).lower()
    text += " " + " ".join(f"{k}={v}" for k, v in (item.get("labels") or {}).items()).lower()
    return all(word in text for word in words)


def register(server: MCPServer, api: Api) -> None:
    @server.tool(annotations=READ)
    async def list_playbooks(
            ctx: Context,
            prefix: Annotated[str | None, Field(description="only paths starting with this")] = None,
            query: Annotated[str | None, Field(description="words that must all appear in the path, name, "
                                                           "description, tags or labels")] = None,
            limit: Annotated[int, Field(ge=1, le=1000)] = 100) -> PlaybookList:
        """List or search the registered playbooks (the latest version of each path)."""
        async with api.tool(ctx) as client:
            doc = await client.catalog_list(prefix)
        items = [i for i in doc.get("items") or [] if not query or _matches(i, query)]
        return PlaybookList(items=[PlaybookSummary.model_validate(i) for i in items[:limit]],
                            total=len(items))

    @server.tool(annotations=READ)
    async def get_playbook(ctx: Context, path: PlaybookPath, version: Version = None) -> PlaybookDoc:
        """A registered playbook (its YAML as registered) and the list of its versions."""
        async with api.tool(ctx) as client:
            doc = await client.catalog_get(path, version)
            versions = await client.catalog_versions(path)
        return PlaybookDoc.model_validate(
            {**doc, "versions": [int(v["version"]) for v in versions.get("items") or []]})

    @server.tool(annotations=READ)
    async def validate_playbook(content: PlaybookText) -> ValidationReport:
        """Validate a playbook text without registering it: every problem located (line, column, path),
        and the steps when it is valid."""
        result = validate_text(content)
        metadata = result.loaded.playbook.metadata if result.loaded.playbook is not None else None
        return ValidationReport(
            valid=not result.errors, errors=located(result.errors), warnings=located(result.warnings),
            name=metadata.name if metadata else None, path=metadata.catalog_path if metadata else None,
            steps=list(result.net.order) if result.net is not None else [])

    @server.tool(annotations=WRITE)
    async def register_playbook(ctx: Context, content: PlaybookText) -> Registered:
        """Register a playbook text as the next version of its path (operator). A playbook that does not
        validate is refused with its located errors."""
        async with api.tool(ctx) as client:
            return Registered.model_validate(await client.register(content))
