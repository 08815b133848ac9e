"""A playbook's steps and their `next` arcs laid out in layers, for the console's SVG (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.dsl.model import Playbook

NODE_W, NODE_H = 150.0, 40.0
GAP_X, GAP_Y, MARGIN = 60.0, 24.0, 12.0


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    status: str  # the step's state in the execution ("not run" when it has none)
    x: float
    y: float
    width: float = NODE_W
    height: float = NODE_H


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    path: str  # an SVG path from the source's right side to the target's left side
    conditional: bool  # the arc has a `when`
    back: bool  # the arc leads to an earlier layer (a cycle)


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float


def arcs_of(playbook: Playbook) -> list[tuple[str, list[tuple[str, bool]]]]:
    """Each step of the workflow, in order, with the steps its arcs lead to (and whether each has a
    `when`); the entry step first."""
    entry = playbook.entry_step
    steps = sorted(playbook.workflow, key=lambda s: s.step != entry)
    return [(s.step, [(a.step, a.when is not None) for a in (s.next.arcs if s.next else [])]) for s in steps]


def layout(steps: Sequence[tuple[str, Sequence[tuple[str, bool]]]], states: Mapping[str, str]) -> Graph:
    """Layers from the first step, breadth first (an arc back to a step already placed is a cycle's and
    does not move it); steps no arc reaches come last. Left to right, one column per layer."""
    names = [name for name, _ in steps]
    known = set(names)
    arcs = {name: [(t, c) for t, c in targets if t in known] for name, targets in steps}
    layer: dict[str, int] = {}
    queue = names[:1]
    if queue:
        layer[queue[0]] = 0
    while queue:
        current = queue.pop(0)
        for target, _ in arcs[current]:
            if target not in layer:
                layer[target] = layer[current] + 1
                queue.append(target)
    last = max(layer.values(), default=-1)
    for name in names:
        if name not in layer:
            last += 1
            layer[name] = last
    columns: dict[int, list[str]] = {}
    for name in names:
        columns.setdefault(layer[name], []).append(name)
    nodes: dict[str, Node] = {}
    for column, members in columns.items():
        for row, name in enumerate(members):
            nodes[name] = Node(name=name, status=states.get(name, "not run"),
                               x=MARGIN + column * (NODE_W + GAP_X), y=MARGIN + row * (NODE_H + GAP_Y))
    edges = [_edge(nodes[s], nodes[t], c, layer[t] <= layer[s]) for s in names for t, c in arcs[s]]
    width = MARGIN * 2 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = MARGIN * 2 + max((len(m) for m in columns.values()), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return Graph(nodes=list(nodes.values()), edges=edges, width=width, height=height + (NODE_H if any(
        e.back for e in edges) else 0))


def _edge(source: Node, target: Node, conditional: bool, back: bool) -> Edge:
    if back:  # below the boxes, from the source's bottom to the target's bottom
        x1, y1 = source.x + source.width / 2, source.y + source.height
        x2, y2 = target.x + target.width / 2, target.y + target.height
        drop = NODE_H * 0.9
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + drop:.1f} {x2:.1f},{y2 + drop:.1f} {x2:.1f},{y2:.1f}"
    else:
        x1, y1 = source.x + source.width, source.y + source.height / 2
        x2, y2 = target.x, target.y + target.height / 2
        bend = (x2 - x1) / 2
        path = f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    return Edge(source=source.name, target=target.name, path=path, conditional=conditional, back=back)
