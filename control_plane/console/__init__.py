"""The web console at /ui (docs/console.md): server-rendered pages over the API's services, signed in with
an API token or a one-time link, acting with that token's identity and role."""

from __future__ import annotations

from fastapi import APIRouter

from control_plane.console import (
    catalog,
    chat,
    execution,
    executions,
    insights,
    links,
    pools,
    proposals,
    signin,
    static,
    triggers,
)

# the live list before the detail page: /ui/executions/live is not an execution id
ROUTERS: tuple[APIRouter, ...] = (links.router, signin.router, static.router, executions.router,
                                  execution.router, proposals.router, catalog.router, pools.router,
                                  chat.router, insights.router, triggers.router)

__all__ = ["ROUTERS"]
