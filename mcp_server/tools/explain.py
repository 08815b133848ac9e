"""Explain and plan a playbook from its compiled net (engine.net.validate: pure, nothing stored).

The text comes from the caller, or from the catalog by path (through the API, with the caller's token).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from engine.errors import NoetlError
from engine.net.net import ArcDef, Net
from engine.net.validate import validate_text
from mcp_server.api import Api
from mcp_server.tools.base import READ, Out
from mcp_server.tools.catalog import Version

OptionalText = Annotated[str | None, Field(max_length=4 * 1024 * 1024,
                                           description="the playbook's YAML (or give `path`)")]
OptionalPath = Annotated[str | None, Field(max_length=1000, description="a registered playbook's catalog "
                                                                        "path (or give `content`)")]
MAX_SOLVE_S = 30.0


class ArcView(Out):
    source: str
    target: str
    when: bool | str | None = Field(default=None, description="the condition (null: always)")
    set: dict[str, Any] | None = Field(default=None, description="what taking the arc sets")
    back_edge: bool = Field(default=False, description="the arc closes a cycle")


class LoopView(Out):
    step: str
    items: str | list[Any] = Field(description="a template yielding the list, or the list itself")
    iterator: str
    mode: str = Field(description="sequential, parallel or cursor (items is then the claim SQL)")
    max_in_flight: int | str | None = None  # a template is rendered when the loop starts


class StepView(Out):
    name: str
    description: str | None = None
    tools: list[str] = Field(description="the tool kind of each task, in order")
    tasks: list[str]
    routing: str = Field(description="exclusive (the first arc whose condition holds) or inclusive "
                                     "(every one)")
    next: list[str] = Field(description="the steps its arcs lead to")
    predecessors: list[str]
    is_join: bool = Field(description="more than one step routes here")
    loop: LoopView | None = None
    reachable: bool = True


class Explanation(Out):
    name: str
    path: str
    description: str | None = None
    entry: str
    final: str | None = None
    steps: list[StepView]
    arcs: list[ArcView]
    joins: list[str]
    loops: list[LoopView]
    warnings: list[str] = Field(default_factory=list)
    summary: str


class PlanView(Out):
    status: str = Field(description="OPTIMAL (proven), FEASIBLE (improved, not proven) or GREEDY")
    makespan_ms: int
    lower_bound_ms: int
    solve_ms: float
    pools: list[str]
    steps: list[dict[str, Any]] = Field(description="the tasks: step, loop index, resources, duration, pool")
    edges: list[list[str]] = Field(default_factory=list)
    schedule: dict[str, Any] = Field(default_factory=dict, description="starts_ms, ends_ms, durations_ms")
    notes: list[str] = Field(default_factory=list)


async def compiled(api: Api, ctx: Context, content: str | None, path: str | None,
                   version: int | None) -> tuple[Net, list[str]]:
    """The net of the given text, or of the registered playbook; a tool error with the located errors."""
    if (content is None) == (path is None):
        raise ToolError("give exactly one of `content` (the playbook's YAML) and `path` (a registered "
                        "playbook's catalog path)")
    if content is None:
        async with api.tool(ctx) as client:
            content = str((await client.catalog_get(str(path), version))["content"])
    result = validate_text(content, path or "<playbook>")
    if result.net is None:
        lines = [f"the playbook does not validate ({len(result.errors)} error(s)):"]
        lines += [f"  line {d.line}, column {d.column} {d.path}: {d.message} [{d.code}]"
                  for d in result.errors]
        raise ToolError("\n".join(lines))
    return result.net, [d.format() for d in result.warnings]


def _arc(net: Net, arc: ArcDef) -> ArcView:
    back = arc.source not in net.transition(arc.target).forward_predecessors
    return ArcView(source=arc.source, target=arc.target, when=arc.when,
                   set=dict(arc.set) if arc.set is not None else None, back_edge=back)


def explain(net: Net, warnings: list[str]) -> Explanation:
    """What the compiled net says about the playbook, for a reader."""
    playbook = net.playbook
    loops: list[LoopView] = []
    steps: list[StepView] = []
    for name in net.order:
        transition = net.transition(name)
        step = playbook.step(name)
        loop = None
        if transition.loop is not None:
            loop = LoopView(step=name, items=transition.loop.items, iterator=transition.loop.iterator,
                            mode=transition.loop.mode, max_in_flight=transition.loop.max_in_flight)
            loops.append(loop)
        steps.append(StepView(
            name=name, description=step.desc, tools=[t.kind for t in step.tool], tasks=list(transition.tasks),
            routing=transition.mode, next=[a.target for a in transition.arcs],
            predecessors=sorted(transition.predecessors), is_join=transition.is_join, loop=loop,
            reachable=name in net.reachable))
    arcs = [_arc(net, arc) for name in net.order for arc in net.transition(name).arcs]
    joins = list(net.joins)
    conditional = sum(a.when is not None for a in arcs)
    parts = [f"{len(steps)} step(s) from '{net.entry}'" + (f" to '{net.final}'" if net.final else ""),
             f"{len(arcs)} arc(s)" + (f", {conditional} conditional" if conditional else "")]
    if joins:
        parts.append("join(s): " + ", ".join(joins))
    if loops:
        parts.append("loop(s): " + ", ".join(f"{lp.step} ({lp.mode})" for lp in loops))
    if any(a.back_edge for a in arcs):
        parts.append("cycle(s) through " + ", ".join(sorted({a.target for a in arcs if a.back_edge})))
    unreachable = [s.name for s in steps if not s.reachable]
    if unreachable:
        parts.append("unreachable: " + ", ".join(unreachable))
    return Explanation(name=playbook.metadata.name, path=playbook.metadata.catalog_path,
                       description=playbook.metadata.description, entry=net.entry, final=net.final,
                       steps=steps, arcs=arcs, joins=joins, loops=loops, warnings=warnings,
                       summary="; ".join(parts) + ".")


def plan_of(net: Net, payload: dict[str, Any] | None, max_solve_s: float) -> PlanView:
    """The schedule of one execution on the default pools (engine.plan), or a tool error saying why not."""
    try:
        from engine.plan import PoolSet, plan
    except ImportError:
        raise ToolError("scheduling is not available in this installation (engine.plan has no `plan`); "
                        "explain_playbook still describes the steps") from None
    pools = PoolSet.default()
    try:
        result = plan(net, pools, payload=payload, max_solve_s=max_solve_s)
    except NoetlError as exc:  # UnsatisfiableDemandError: a step can never run on the pools
        raise ToolError(str(exc)) from None
    data = result.as_json()
    notes = ["durations: the per-kind defaults (the event log's history is read by `noetl plan`)",
             *result.problem.notes]
    return PlanView(status=data["status"], makespan_ms=result.makespan_ms,
                    lower_bound_ms=data["lower_bound_ms"], solve_ms=data["solve_ms"], pools=list(pools.names),
                    steps=data["steps"], edges=[list(map(str, e)) for e in data["edges"]],
                    schedule=data["schedule"], notes=notes)


def register(server: MCPServer, api: Api) -> None:
    @server.tool(annotations=READ)
    async def explain_playbook(ctx: Context, content: OptionalText = None, path: OptionalPath = None,
                               version: Version = None) -> Explanation:
        """Explain a playbook (a text, or a registered one by path): its steps and their tools, the arcs
        between them with their conditions, the joins, the loops and the cycles, from the compiled net."""
        net, warnings = await compiled(api, ctx, content, path, version)
        return explain(net, warnings)

    @server.tool(annotations=READ)
    async def plan_playbook(
            ctx: Context, content: OptionalText = None, path: OptionalPath = None, version: Version = None,
            payload: Annotated[dict[str, Any] | None, Field(description="merged over the workload (loop "
                                                                        "items known ahead)")] = None,
            max_solve_s: Annotated[float, Field(gt=0, le=MAX_SOLVE_S)] = 2.0) -> PlanView:
        """Plan one execution of a playbook on the default worker pool: the tasks, their precedence, a
        schedule (CP-SAT with a greedy fallback), its makespan and lower bound."""
        net, _ = await compiled(api, ctx, content, path, version)
        return await asyncio.to_thread(plan_of, net, payload, max_solve_s)  # CPU: off the event loop
