"""The MCP tools, one module per area; each has `register(server, api)`.

- catalog: list/search, get, validate (locally), register (operator)
- executions: execute (operator, optionally waiting), status, list, events (paged), cancel (operator)
- insights: why did it fail (the diagnosis), similar failures, search past failures by text
- proposals: list, get, propose a change (through the guardrails; never approve)
- explain: a playbook's steps, arcs, joins and loops (the compiled net); plan it on the pools
- triggers: list, show (with firings), create, pause, resume, delete (operator)
"""

from mcp_server.tools import catalog, executions, explain, insights, proposals, triggers

AREAS = (catalog, executions, insights, proposals, explain, triggers)

__all__ = ["AREAS"]
