"""Resources: playbooks (`playbook://PATH`, a version with `?version=N`, `playbook-versions://PATH`, the
catalog `playbooks://catalog`) and executions (`execution://ID`, its `/events` and its `/diagnosis`).

Read through the API with the caller's token, like the tools; an unknown path or id is a resource-not-found
error naming it.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from mcp_server.api import Api

JSON = "application/json"
YAML = "application/yaml"
MAX_EVENTS = 5000  # an execution's events resource holds at most this many (the tool list_events pages)


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=str)


def register(server: MCPServer, api: Api) -> None:
    @server.resource("playbooks://catalog{?prefix}", name="catalog", mime_type=JSON,
                     description="The registered playbooks (the latest version of each path)")
    async def catalog(ctx: Context, prefix: str | None = None) -> str:
        async with api.resource(ctx, "playbooks://catalog") as client:
            return _json(await client.catalog_list(prefix))

    @server.resource("playbook://{+path}{?version}", name="playbook", mime_type=YAML,
                     description="A playbook's YAML as registered (the latest version, or ?version=N)")
    async def playbook(ctx: Context, path: str, version: str | None = None) -> str:
        uri = f"playbook://{path}"
        if version and not version.isdigit():
            raise ResourceError(f"{uri}: version '{version}' is not a number (use ?version=N, N >= 1)")
        async with api.resource(ctx, uri) as client:
            return str((await client.catalog_get(path, int(version) if version else None))["content"])

    @server.resource("playbook-versions://{+path}", name="playbook versions", mime_type=JSON,
                     description="Every version of a playbook's path, oldest first")
    async def versions(ctx: Context, path: str) -> str:
        async with api.resource(ctx, f"playbook-versions://{path}") as client:
            return _json(await client.catalog_versions(path))

    @server.resource("execution://{execution_id}", name="execution", mime_type=JSON,
                     description="An execution: status, result or error, and each step's state")
    async def execution(ctx: Context, execution_id: str) -> str:
        async with api.resource(ctx, f"execution://{execution_id}") as client:
            return _json(await client.execution(execution_id))

    @server.resource("execution://{execution_id}/events", name="execution events", mime_type=JSON,
                     description=f"An execution's events in order (at most {MAX_EVENTS}; the list_events "
                                 "tool pages through any number)")
    async def events(ctx: Context, execution_id: str) -> str:
        async with api.resource(ctx, f"execution://{execution_id}/events") as client:
            items: list[dict[str, Any]] = []
            after: int | None = 0
            while after is not None and len(items) < MAX_EVENTS:
                page = await client.events(execution_id, after_seq=after, limit=1000)
                items.extend(page.get("items") or [])
                nxt = page.get("next_after_seq")
                after = int(nxt) if nxt is not None and nxt != after else None
            truncated = len(items) > MAX_EVENTS or after is not None
            return _json({"items": items[:MAX_EVENTS], "truncated": truncated})

    @server.resource("execution://{execution_id}/diagnosis", name="execution diagnosis", mime_type=JSON,
                     description="Why an execution failed: root cause, transience, evidence, fixes")
    async def diagnosis(ctx: Context, execution_id: str) -> str:
        async with api.resource(ctx, f"execution://{execution_id}/diagnosis") as client:
            return _json(await client.diagnosis(execution_id))
