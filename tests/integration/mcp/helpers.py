"""Helpers of the MCP tests: sessions with the SDK's own client, calling tools, playbooks."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from control_plane.stack import Stack


@dataclass
class McpApi:
    """The running control plane: its URL (MCP at URL/mcp), the stack, a token per role, its home."""

    url: str
    stack: Stack
    tokens: dict[str, str]
    home: Path

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """An initialized session over streamable HTTP at URL/mcp, sending the bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with streamable_http_client(f"{url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def stdio_session(command: str, args: list[str], env: dict[str, str],
                        cwd: Path | None = None) -> AsyncIterator[ClientSession]:
    """An initialized session with a server started as a subprocess speaking MCP on stdio."""
    params = StdioServerParameters(command=command, args=args, env=env, cwd=cwd)
    async with stdio_client(params, errlog=sys.stderr) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """The tool's structured output; the test fails with the tool's error text otherwise."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}({arguments}) failed: {text_of(result)}"
    assert result.structured_content is not None, f"{tool} gave no structured output"
    assert json.loads(text_of(result)) == result.structured_content  # the text is the same document
    return result.structured_content


async def fails(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The text of the tool error the call answers with (the test fails if it succeeds)."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, f"{tool}({arguments}) should have failed: {result.structured_content}"
    return text_of(result)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def playbook(name: str, body: str, path: str | None = None) -> str:
    meta = f"{{name: {name}, path: {path}}}" if path else f"{{name: {name}}}"
    return f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {meta}\n" + textwrap.dedent(body)


HELLO = """\
workload: {who: NoETL}
workflow:
  - step: greet
    desc: say hello
    tool:
      kind: python
      input: {who: "{{ workload.who }}"}
      code: |
        result = {"greeting": f"Hello, {who}"}
    next: {arcs: [{step: shout, when: "{{ greet.greeting != '' }}"}, {step: done}]}
  - step: shout
    tool: {kind: python, input: {text: "{{ greet.greeting }}"}, code: "result = text.upper()"}
    next: done
  - step: done
    tool: {kind: noop, result: ok}
"""

FAILING = """\
workflow:
  - step: fetch
    tool:
      kind: python
      code: |
        raise ConnectionError("connection reset by the upstream orders service (peer closed the socket)")
    next: done
  - step: done
    tool: {kind: noop, result: ok}
"""

LOOPING = """\
workload: {regions: [eu, us, apac]}
workflow:
  - step: fan
    loop: {in: "{{ workload.regions }}", iterator: region, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, input: {r: "{{ region }}"}, code: "result = r.upper()"}
    next: left
  - step: left
    tool: {kind: noop, result: l}
    next: {arcs: [{step: again, when: "{{ false }}"}, {step: end}]}
  - step: again
    tool: {kind: noop, result: a}
    next: left
  - step: end
    tool: {kind: noop, result: e}
"""
