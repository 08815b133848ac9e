"""`compile_net(playbook) -> Net`: the arcs, predecessors, cycles and reachability of a valid playbook."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.dsl.model import LoopCursor, LoopFrame, LoopSpec, Playbook, Step
from engine.dsl.templates import TemplateRenderer
from engine.net.net import ArcDef, CommandParts, CursorDef, LoopDef, Net, Transition

_RENDERER = TemplateRenderer()


def worker_reads(playbook: Playbook, step: Step) -> frozenset[str]:
    """The names a step's worker-side templates read (tool configs, rules, task sets, workbook tasks):
    only those step results travel with its command."""
    tasks = [t.model_dump(by_alias=True, exclude_none=True, exclude={"code"}) for t in step.tool]
    for tool in step.tool:
        if tool.kind == "workbook":
            tasks += [t.model_dump(by_alias=True, exclude_none=True, exclude={"code"})
                      for wb in playbook.workbook if wb.name == tool.name for t in wb.tool]
    names = _RENDERER.referenced_names(tasks)
    if step.loop is not None and step.input:  # rendered by the worker, once per item (spec 2)
        names |= _RENDERER.referenced_names(step.input)
    if step.loop is not None and step.loop.cursor is not None:  # the claim is rendered by the claimer
        names |= _RENDERER.referenced_names(step.loop.cursor.model_dump(exclude_none=True))
    tools = list(step.tool) + [t for tool in step.tool if tool.kind == "workbook"
                               for wb in playbook.workbook if wb.name == tool.name for t in wb.tool]
    if any(_reads_context(t) for t in tools):  # python's `context` holds every step result (spec 3.1)
        names |= {s.step for s in playbook.workflow}
    return frozenset(names)


def cursor_def(cursor: LoopCursor, spec: LoopSpec) -> CursorDef:
    frame = spec.frame or LoopFrame()
    return CursorDef(kind=cursor.kind, auth=cursor.auth, connection_string=cursor.connection_string,
                     claim=cursor.claim,
                     claimers=spec.max_in_flight if isinstance(spec.max_in_flight, int) else 1,
                     max_rows=frame.max_rows,
                     heartbeat_s=min(frame.heartbeat_seconds, frame.lease_seconds / 3))


def _reads_context(tool: Any) -> bool:
    """Python code that may read `context` (its source names it, or is a script we cannot see here)."""
    if tool.kind != "python":
        return False
    return tool.script is not None or "context" in (tool.code or "")


def command_parts(playbook: Playbook, step: Step, reads: frozenset[str], names: list[str]) -> CommandParts:
    """The parts of the step's RunStep commands that do not depend on the execution's state."""
    workbook: dict[str, tuple[dict[str, Any], ...]] = {}
    contracts: dict[str, dict[str, Any]] = {}
    for tool in step.tool:
        if tool.kind == "workbook":
            for wb in playbook.workbook:
                if wb.name == tool.name:
                    workbook[wb.name] = tuple(t.model_dump(by_alias=True, exclude_none=True) for t in wb.tool)
                    if wb.assert_ is not None:
                        contracts[wb.name] = {"assert": wb.assert_.model_dump()}
    return CommandParts(
        tasks=tuple(t.model_dump(by_alias=True, exclude_none=True) for t in step.tool),
        workbook=workbook, workbook_contracts=contracts,
        output=step.output.model_dump(exclude_none=True) if step.output else None,
        keychain=tuple(k.model_dump(by_alias=True, exclude_none=True) for k in playbook.keychain),
        step_names=tuple(n for n in names if n in reads),
        timeout_s=step.spec.timeout if isinstance(step.spec.timeout, float)
        else _default_timeout(playbook) if step.spec.timeout is None else None,
        max_iterations=step.spec.max_iterations,
        child=any(t.kind == "playbook" for t in step.tool))


def _default_timeout(playbook: Playbook) -> float | None:
    """`executor.spec.policy.defaults.timeout_s`: the timeout of a step that sets none (spec 16)."""
    policy = playbook.executor.spec.policy
    defaults = policy.defaults if policy is not None else None
    return defaults.timeout_s if defaults is not None else None


def successors_of(edges: Mapping[str, Iterable[str]], start: Iterable[str]) -> set[str]:
    """Every node reachable from `start` (including the start nodes)."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(edges.get(node, ()))
    return seen


def strongly_connected(nodes: Iterable[str], edges: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Tarjan's algorithm, iterative: node -> component id."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                cid = len(set(component.values()))
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = cid
                    if member == node:
                        break
    return component


def compile_net(playbook: Playbook) -> Net:
    """The net of a validated playbook (static checks have already passed)."""
    names = [s.step for s in playbook.workflow]
    edges: dict[str, list[str]] = {n: [] for n in names}
    preds: dict[str, set[str]] = {n: set() for n in names}
    arcs: dict[str, tuple[ArcDef, ...]] = {}
    for step in playbook.workflow:
        defs = []
        for i, arc in enumerate(step.next.arcs if step.next else []):
            defs.append(ArcDef(step.step, arc.step, i, arc.when, arc.set))
            edges[step.step].append(arc.step)
            preds.setdefault(arc.step, set()).add(step.step)
        arcs[step.step] = tuple(defs)
    components = strongly_connected(names, edges)
    reverse: dict[str, list[str]] = {n: sorted(p) for n, p in preds.items()}
    ancestors = {n: frozenset(successors_of(reverse, reverse[n])) for n in names}
    entry = playbook.entry_step
    final = playbook.executor.spec.final_step
    reachable = successors_of(edges, [entry] + ([final] if final else []))
    transitions: dict[str, Transition] = {}
    for i, step in enumerate(playbook.workflow):
        forward = frozenset(p for p in preds[step.step] if components[p] != components[step.step])
        loop = None
        if step.loop is not None:
            cursor = cursor_def(step.loop.cursor, step.loop.spec) if step.loop.cursor is not None else None
            loop = LoopDef(step.loop.in_ if step.loop.in_ is not None else (cursor.claim if cursor else []),
                           step.loop.iterator, step.loop.spec.mode, step.loop.spec.max_in_flight, cursor)
        transitions[step.step] = Transition(
            name=step.step,
            index=i,
            mode=step.next.spec.mode if step.next else "exclusive",
            arcs=arcs[step.step],
            predecessors=frozenset(preds[step.step]),
            forward_predecessors=forward,
            loop=loop,
            tasks=tuple(step.task_name(j) for j in range(len(step.tool))),
            best_effort=step.spec.policy.failure.mode == "best_effort",
            reads=(reads := worker_reads(playbook, step)),
            command=command_parts(playbook, step, reads, names),
        )
    return Net(playbook=playbook, entry=entry, final=final, transitions=transitions,
               order=tuple(names), reachable=frozenset(reachable), ancestors=ancestors,
               components=components)
