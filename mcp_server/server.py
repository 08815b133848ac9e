"""The MCP server: NoETL's tools, resources and prompts over the control plane's REST API.

    server = build_server(fixed_api(NoetlClient(url, token)))   # stdio: one server, one token
    server = build_server(loopback_api())                        # at /mcp: each request's own token

Every tool calls the REST API through `NoetlClient`, so the API enforces the caller's role: there is no
other way in. Tools have typed inputs and structured (pydantic) outputs; a refusal of the API is a tool
error carrying the API's problem (status, code, detail, where, fix, located errors), and the session goes
on.
"""

from __future__ import annotations

import importlib.metadata

from mcp.server.mcpserver import MCPServer

from mcp_server import prompts, resources
from mcp_server.api import Api, ApiFactory
from mcp_server.tools import AREAS

NAME = "noetl"
INSTRUCTIONS = (
    "NoETL runs workflow playbooks. Find playbooks (list_playbooks, get_playbook), check and understand "
    "them (validate_playbook, explain_playbook, plan_playbook), run them (execute_playbook with wait, "
    "get_execution, list_events, cancel_execution), find out why one failed (why_failed, "
    "similar_failures, search_failures), start them on a schedule, after other runs, on NATS messages or "
    "webhooks (trigger_create, trigger_list, trigger_show, trigger_pause, trigger_resume, trigger_delete) "
    "and propose a runtime change to a step (propose_change). A "
    "proposal waits for a person with the approver role; no tool approves. What a tool may do is what "
    "the token it runs with may do (viewer, operator, approver, admin).")


def build_server(api_factory: ApiFactory) -> MCPServer:
    """NoETL's MCP server; `api_factory` gives each call its client of the REST API."""
    server: MCPServer = MCPServer(NAME, title="NoETL", instructions=INSTRUCTIONS, version=_version(),
                                  log_level="WARNING")
    api = Api(api_factory)
    for area in AREAS:
        area.register(server, api)
    resources.register(server, api)
    prompts.register(server)
    return server


def _version() -> str:
    try:
        return importlib.metadata.version("noetl")
    except importlib.metadata.PackageNotFoundError:
        return "0"
