"""Fails, naming each cycle, when modules inside one of the project's packages import each other in a circle.

Every import a module makes when it runs counts: at module level and inside functions (an import inside a
function that closes a circle only hides it). Imports under `if TYPE_CHECKING:` do not run and do not count.
Importing a.b.c also runs the packages a and a.b, so those count as imported too (but not the importer's
own packages, which are already being imported). Usage: python .ci/import_cycles.py [PACKAGE ...]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("engine", "control_plane", "agents", "mcp_server", "policies", "noetl", "evals")
ROOT = Path(__file__).resolve().parent.parent


def modules(package: str) -> dict[str, Path]:
    """Every module of a package: dotted name -> file."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that runs (all but those under `if TYPE_CHECKING:`), and whether it is
    inside a function."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child.test):
                for other in child.orelse:
                    walk(other, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return found


def _absolute(name: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def edges(package: str) -> dict[str, dict[str, str]]:
    """module -> {module of the same package it imports: where ("line 12", or "line 40, in a function")}."""
    known = modules(package)
    graph: dict[str, dict[str, str]] = {name: {} for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for node, in_function in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _absolute(name, node, path.name == "__init__.py")
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                           for alias in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the module and the packages it runs on the way
                    step = ".".join(parts[:i])
                    if step in known and step not in own:
                        where = f"line {node.lineno}" + (", in a function" if in_function else "")
                        graph[name].setdefault(step, where)
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[tuple[list[str], set[str]]]:
    """Each strongly connected group of modules with one shortest cycle through it (Tarjan, then a
    breadth-first search)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # recursion depth is bounded by the package's module count
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    found = []
    for group in groups:
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:  # breadth first, inside the group, back to start
            nxt_frontier = []
            for node in frontier:
                for nxt in sorted(graph[node]):
                    if nxt == start:
                        cycle = paths[node] + [start]
                        break
                    if nxt in group and nxt not in paths:
                        paths[nxt] = paths[node] + [nxt]
                        nxt_frontier.append(nxt)
                if cycle:
                    break
            frontier = nxt_frontier
        found.append((cycle or [start, start], group))
    return found


def main(packages: list[str]) -> int:
    status = 0
    for package in packages:
        graph = edges(package)
        for cycle, group in cycles(graph):
            status = 1
            steps = " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False))
            print(f"import cycle in {package}: {steps} -> {cycle[-1]}")
            if len(group) > len(cycle) - 1:
                print(f"  the modules that import each other in a circle: {', '.join(sorted(group))}")
    if status == 0:
        print(f"no import cycles in {', '.join(packages)}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(PACKAGES)))
