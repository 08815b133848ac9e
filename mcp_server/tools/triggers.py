"""Trigger tools: list, show (with firings), create (operator), pause, resume and delete (operator)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_server.api import Api
from mcp_server.tools.base import READ, WRITE, Out
from mcp_server.tools.catalog import PlaybookPath

TOGGLE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                         open_world_hint=False)
DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                         open_world_hint=False)

TriggerId = Annotated[str, Field(min_length=1, max_length=200, description="the trigger's id")]
Duration = str | int | float


class FiringView(Out):
    """One firing: when it was due, what became of it and the execution it started."""

    id: str
    scheduled_at: str
    status: str = Field(description="pending, queued, started, skipped or failed")
    reason: str | None = None
    execution_id: str | None = None


class TriggerView(Out):
    """A trigger: what starts a run of its playbook (`kind` and `spec`) and when it fires next."""

    id: str
    name: str | None = None
    path: str
    version: int | None = None
    kind: str = Field(description="cron, interval, after, subject or webhook")
    spec: dict[str, Any] = Field(default_factory=dict, description="its definition, as given")
    source: str = Field(description="api, or playbook (declared in it, registered with it)")
    paused: bool
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    next_at: list[str] = Field(default_factory=list, description="when a cron or every trigger fires next")
    webhook_path: str | None = Field(default=None, description="where a webhook trigger takes deliveries")


class TriggerCreated(TriggerView):
    secret: str | None = Field(default=None, description="a webhook's HMAC-SHA256 key: shown in this answer "
                                                         "only, keep it now")


class TriggerDetail(TriggerView):
    firings: list[FiringView] = Field(default_factory=list, description="the newest firings, newest first")


class TriggerList(Out):
    items: list[TriggerView]


class TriggerDeleted(Out):
    id: str
    deleted: bool = True


def create_body(path: str, **fields: Any) -> dict[str, Any]:
    """The POST /api/triggers body: only the fields given (a default left out applies as the API's)."""
    after_path, on = fields.pop("after_path", None), fields.pop("on", None)
    body: dict[str, Any] = {"path": path, **{k: v for k, v in fields.items() if v is not None}}
    if after_path is not None:
        body["after"] = {"path": after_path, **({"on": on} if on is not None else {})}
    elif on is not None:
        body["after"] = {"on": on}  # the API says that `after` needs its path
    if body.get("webhook") is False:
        del body["webhook"]
    return body


def register(server: MCPServer, api: Api) -> None:
    @server.tool(annotations=READ)
    async def trigger_list(
            ctx: Context,
            path: Annotated[str | None, Field(max_length=500, description="only the triggers of this "
                                                                          "playbook")] = None) -> TriggerList:
        """The triggers (schedules, events and webhooks that start runs), by playbook path."""
        async with api.tool(ctx) as client:
            return TriggerList.model_validate(await client.trigger_list(path))

    @server.tool(annotations=READ)
    async def trigger_show(ctx: Context, trigger_id: TriggerId,
                           limit: Annotated[int, Field(ge=1, le=1000, description="how many of the newest "
                                                                                  "firings")] = 20,
                           ) -> TriggerDetail:
        """One trigger: its definition, when it fires next and its newest firings (each with its status,
        the reason it was skipped or failed, and the execution it started)."""
        async with api.tool(ctx) as client:
            return TriggerDetail.model_validate(await client.trigger_get(trigger_id, limit=limit))

    @server.tool(annotations=WRITE)
    async def trigger_create(
            ctx: Context, path: PlaybookPath,
            cron: Annotated[str | None, Field(max_length=200, description="a cron expression, e.g. "
                                                                          "'30 2 * * *'")] = None,
            tz: Annotated[str | None, Field(max_length=100, description="the cron's time zone, e.g. "
                                                                        "'Europe/Paris' (default UTC)")]
            = None,
            every: Annotated[Duration | None, Field(description="an interval: '90s', '5m', '1h' or "
                                                                "seconds")] = None,
            after_path: Annotated[str | None, Field(max_length=500, description="start after each run of "
                                                                                "this playbook ends")] = None,
            on: Annotated[Literal["completed", "failed", "any"] | None,
                          Field(description="with after_path: which ends (default completed)")] = None,
            subject: Annotated[str | None, Field(max_length=500, description="a NATS subject: a run "
                                                                             "per message, e.g. orders.>")]
            = None,
            webhook: Annotated[bool, Field(description="a run per signed HTTP delivery to its "
                                                       "webhook_path")] = False,
            payload: Annotated[dict[str, Any] | None,
                               Field(description="the run's payload; values may be templates of the "
                                                 "firing, e.g. '{{ firing.scheduled_at }}'")] = None,
            catchup: Annotated[Literal["skip", "latest", "all"] | None,
                               Field(description="cron and every: what to do with times missed while "
                                                 "NoETL was down (default latest)")] = None,
            catchup_limit: Annotated[int | None, Field(ge=1, le=1000, description="at most this many "
                                                                                  "caught up")] = None,
            concurrency: Annotated[Literal["allow", "skip", "queue"] | None,
                                   Field(description="when the previous run still runs (default "
                                                     "allow)")] = None,
            jitter: Annotated[Duration | None, Field(description="cron and every: a random delay up to "
                                                                 "this, e.g. '30s'")] = None,
            name: Annotated[str | None, Field(max_length=200, description="a name for it")] = None,
            version: Annotated[int | None, Field(ge=1, description="start this version of the playbook "
                                                                   "(default: the newest)")] = None,
    ) -> TriggerCreated:
        """Create a trigger that starts runs of the playbook at `path` (operator): exactly one of cron,
        every, after_path, subject or webhook. A webhook trigger's secret is in this answer only."""
        body = create_body(path, cron=cron, tz=tz, every=every, after_path=after_path, on=on, subject=subject,
                           webhook=webhook, payload=payload, catchup=catchup, catchup_limit=catchup_limit,
                           concurrency=concurrency, jitter=jitter, name=name, version=version)
        async with api.tool(ctx) as client:
            return TriggerCreated.model_validate(await client.trigger_create(body))

    @server.tool(annotations=TOGGLE)
    async def trigger_pause(ctx: Context, trigger_id: TriggerId) -> TriggerView:
        """Pause a trigger (operator): it starts nothing until it is resumed."""
        async with api.tool(ctx) as client:
            return TriggerView.model_validate(await client.trigger_pause(trigger_id, paused=True))

    @server.tool(annotations=TOGGLE)
    async def trigger_resume(ctx: Context, trigger_id: TriggerId) -> TriggerView:
        """Resume a paused trigger (operator); a time trigger goes on from now (the paused time is not
        caught up)."""
        async with api.tool(ctx) as client:
            return TriggerView.model_validate(await client.trigger_pause(trigger_id, paused=False))

    @server.tool(annotations=DELETE)
    async def trigger_delete(ctx: Context, trigger_id: TriggerId) -> TriggerDeleted:
        """Delete a trigger (operator): it starts nothing more; the runs it started go on."""
        async with api.tool(ctx) as client:
            await client.trigger_delete(trigger_id)
        return TriggerDeleted(id=trigger_id)
