"""The control plane's REST API (docs/api.md) as a FastAPI application over the services.

`create_app(ApiServices.from_stack(stack))` builds it; control_plane.server serves it beside the
orchestrator, with the web console (control_plane.console, /ui) over the same services. Layers: api
(routes, auth, problem+json) -> services -> store; the API never touches the store itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from control_plane.api import catalog, credentials, docs, executions, health, metrics, problems, tokens
from control_plane.api import chat as chat_api
from control_plane.api import diagnosis as diagnosis_api
from control_plane.api import insights as insights_api
from control_plane.api import orchestrators as orchestrators_api
from control_plane.api import policies as policies_api
from control_plane.api import pools as pools_api
from control_plane.api import similar as similar_api
from control_plane.api import triggers as triggers_api
from control_plane.api.auth import required_role
from control_plane.api.middleware import MAX_BODY_BYTES, BodyLimit, Guard, RejectNul
from control_plane.console import ROUTERS as CONSOLE_ROUTERS
from control_plane.schemas.problems import Problem
from control_plane.services.auth import AuthService
from control_plane.services.catalog import CatalogService
from control_plane.services.credentials import CredentialService
from control_plane.services.executions import ExecutionService
from control_plane.services.metrics import MetricsService
from control_plane.services.orchestrators import OrchestratorsService
from control_plane.services.planning import PlanningService
from control_plane.services.policies import PolicyService, PolicySettings
from control_plane.services.pools import PoolsService
from control_plane.services.sessions import SessionService
from control_plane.services.triggers import TriggerService

if TYPE_CHECKING:
    from control_plane.stack import Stack

log = logging.getLogger(__name__)

API_VERSION = "1"
HEALTH_TIMEOUT_S = 2.0
_ROUTERS = (health.router, metrics.router, docs.router, catalog.router, executions.router,
            credentials.router, tokens.router, policies_api.router, diagnosis_api.router, similar_api.router,
            chat_api.router, pools_api.router, orchestrators_api.router, insights_api.router,
            triggers_api.router, triggers_api.hooks)


@dataclass(frozen=True, slots=True)
class HealthReport:
    postgres: bool
    nats: bool


@dataclass(frozen=True)
class ApiServices:
    """What the API calls: one service per resource, and the health probe."""

    auth: AuthService
    catalog: CatalogService
    executions: ExecutionService
    credentials: CredentialService
    metrics: MetricsService
    health: Callable[[], Awaitable[HealthReport]]
    policies: PolicyService | None = None  # proposals and overlays (docs/policies.md)
    pools: PoolsService | None = None  # the worker pools as they are now
    planning: PlanningService | None = None  # validate and plan as the CLI does (the console's catalog)
    sessions: SessionService | None = None  # the web console's sign-ins (docs/console.md)
    orchestrators: OrchestratorsService | None = None  # the orchestrator processes and their partitions
    triggers: TriggerService | None = None  # schedules, events and webhooks that start runs

    async def close(self) -> None:
        if self.pools is not None:
            await self.pools.close()

    @classmethod
    def from_stack(cls, stack: Stack) -> ApiServices:
        store, bus, executions_service = stack.store, stack.bus, stack.executions
        if store is None or bus is None or executions_service is None:
            raise RuntimeError("the stack is not started: enter `async with Stack(config)` first")

        async def probe() -> HealthReport:
            async def postgres() -> bool:
                try:
                    answered = await asyncio.wait_for(store.db.ping(), HEALTH_TIMEOUT_S)
                except Exception as exc:  # any failure means: not healthy
                    log.warning("health: Postgres is unreachable (%s)", type(exc).__name__)
                    return False
                return answered

            return HealthReport(postgres=await postgres(), nats=bus.is_connected)

        triggers = TriggerService(store, executions_service, bus)
        return cls(auth=AuthService(store), catalog=CatalogService(store, triggers),
                   executions=executions_service,
                   credentials=CredentialService(store), metrics=MetricsService(store, bus), health=probe,
                   policies=PolicyService(store, PolicySettings(pools=stack.pool_names)),
                   pools=PoolsService(bus, stack.config.pools, tuple(stack.config.workers)),
                   planning=PlanningService(store, stack.config.pools),
                   sessions=SessionService(store), orchestrators=OrchestratorsService(store),
                   triggers=triggers)


class Mounted(Protocol):
    """An ASGI app answered at exactly `path` beside the API, whose `running()` context the server enters
    while it serves (the entry point mounts the MCP server this way: the control plane never imports it)."""

    path: str

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    def running(self) -> AbstractAsyncContextManager[None]: ...


def create_app(services: ApiServices, *, keepalive_s: float = executions.KEEPALIVE_S,
               max_body_bytes: int = MAX_BODY_BYTES, mounts: Sequence[Mounted] = (),
               state: Mapping[str, Any] | None = None) -> FastAPI:
    """The API over `services` (and `mounts`). `app.state.stopping` ends open event streams when set.
    `state` puts what the layers above give the serving process on `app.state` (`diagnosis`, `similar`,
    `chat`: the control plane never imports the agents that provide them)."""
    app = FastAPI(title="NoETL control plane", version=API_VERSION, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Playbooks, executions, events, credentials and tokens. "
                  "Every endpoint but GET /health needs `Authorization: Bearer <token>`; every error is "
                  "application/problem+json (RFC 9457).")
    app.state.services = services
    app.state.stopping = asyncio.Event()
    app.state.keepalive_s = keepalive_s
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    for router in (*_ROUTERS, *CONSOLE_ROUTERS):  # the web console (/ui) over the same services
        app.include_router(router)
    for mounted in mounts:  # their own auth; not in the OpenAPI document
        # Starlette's Route serves an endpoint that is not a function or method as an ASGI app;
        # add_route's annotation names only the request -> response kind
        endpoint = cast("Callable[[Request], Awaitable[Response]]", mounted)
        app.add_route(mounted.path, endpoint, include_in_schema=False)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(RejectNul)
    app.add_middleware(Guard)  # added last: the outermost

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem.pop("$defs", {}))
            schemas["Problem"] = problem
            document["security"] = [{"bearer": []}]
            always = problems.responses(400, 500)  # a NUL in the URL; an unexpected failure
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    if not isinstance(operation, dict):
                        continue
                    operation.setdefault("security", [])  # no bearer dependency: public (/health)
                    for status, response in always.items():
                        operation["responses"].setdefault(str(status), response)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    role: str | None  # None: public


def routes_of(app: FastAPI) -> list[Route]:
    """Every (method, path) the app answers, with the role it requires."""
    found: list[Route] = []
    for context in iter_route_contexts(app.routes):
        original = context.original_route
        dependant = getattr(original, "dependant", None)
        role = required_role(dependant) if dependant is not None else None
        for method in sorted(context.methods or ()):
            found.append(Route(method, str(context.path), role))
    return found
