"""Prompts: "diagnose this execution" and "draft a playbook for ...", each naming the tools to use."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage

SKELETON = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: hello, path: examples/hello}
workload: {name: NoETL}
workflow:
  - step: greet
    tool:
      kind: python
      input: {who: "{{ workload.name }}"}
      code: |
        result = {"greeting": f"Hello, {who}"}
    next: {arcs: [{step: shout}]}
  - step: shout
    tool: {kind: python, input: {text: "{{ greet.greeting }}"}, code: "result = text.upper()"}
"""


def register(server: MCPServer) -> None:
    @server.prompt(name="diagnose_execution", title="Diagnose this execution")
    def diagnose_execution(execution_id: str) -> list[Message]:
        """Why did an execution fail, what happened to similar failures, and what change to propose."""
        return [UserMessage(
            f"Diagnose NoETL execution {execution_id}.\n"
            f"1. Call `why_failed` with execution_id={execution_id!r}: the failed step, the root-cause step "
            "and type, its transience, the evidence and the suggested fixes. If the execution still runs, "
            "`get_execution` tells its status; wait for it to end.\n"
            "2. Call `similar_failures` for it: did the same failure happen before, and did a retry or a "
            "later run succeed?\n"
            "3. When the evidence is thin, read the events (`list_events`, or the resource "
            f"execution://{execution_id}/events) and the playbook (`get_playbook`, `explain_playbook`).\n"
            "4. Explain the root cause in a few sentences, citing the evidence (event ids).\n"
            "5. Only when the failure is transient or intermittent and a runtime change would help (a retry, "
            "a larger timeout, another pool, less concurrency), call `propose_change` with the step, the "
            "change, a rationale and the diagnosis. Never propose a retry for a permanent failure: say "
            "what to change in the code, query, credential or data instead. A proposal waits for a person "
            "with the approver role: say so, and never claim it is applied.")]

    @server.prompt(name="draft_playbook", title="Draft a playbook for ...")
    def draft_playbook(goal: str) -> list[Message]:
        """Draft a NoETL playbook for a goal, validate it, explain it and (when asked) register it."""
        return [UserMessage(
            f"Draft a NoETL playbook that does this: {goal}\n\n"
            "A playbook is YAML: apiVersion noetl.io/v2, kind Playbook, metadata {name, path}, a workload "
            "(inputs), and a workflow of steps. Each step has a `tool` (kind: python, http, postgres, "
            "duckdb, clickhouse, qdrant, shell, playbook, workbook or noop) and `next` arcs to other steps "
            "(with `when` conditions for branches); a step with several incoming arcs is a join; `loop: {in, "
            "iterator}` runs a step per item. Templates such as {{ workload.x }} and {{ step_name.field }} "
            "read the workload and earlier results; a SQL step's result is {rows, row_count, columns, "
            "statement_count, command_0, ...}, so read its rows as {{ step_name.rows }}. A minimal "
            "example:\n\n"
            f"```yaml\n{SKELETON}```\n\n"
            "Then call `validate_playbook` with the text and fix every located error it reports; call "
            "`explain_playbook` and check the steps, arcs, joins and loops are what the goal needs. Look at "
            "`list_playbooks` for similar playbooks first. Register it with `register_playbook` only when "
            "asked to (it needs the operator role).")]
