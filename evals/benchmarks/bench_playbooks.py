"""The playbooks the engine benchmarks run: a chain of noop steps and parallel loops of a tool."""

from __future__ import annotations

from typing import Any

import yaml

CHAIN_PATH = "bench/dispatch_chain"
LOOP_PATH = "bench/dispatch_loop"


def _playbook(name: str, path: str, workflow: list[dict[str, Any]],
              workload: dict[str, Any] | None = None) -> str:
    document: dict[str, Any] = {"apiVersion": "noetl.io/v2", "kind": "Playbook",
                                "metadata": {"name": name, "path": path}}
    if workload:
        document["workload"] = workload
    document["workflow"] = workflow
    return yaml.safe_dump(document, sort_keys=False)


def chain_playbook(steps: int) -> str:
    """`steps` noop steps, each the only successor of the one before: every step waits for its
    predecessor, so the execution's length is `steps` dispatch round trips through the engine."""
    if steps < 1:
        raise ValueError(f"a chain needs at least 1 step, got {steps}")
    workflow: list[dict[str, Any]] = []
    for index in range(steps):
        step: dict[str, Any] = {"step": f"s{index:04d}", "tool": {"kind": "noop"}}
        if index + 1 < steps:
            step["next"] = {"arcs": [{"step": f"s{index + 1:04d}"}]}
        workflow.append(step)
    return _playbook("dispatch_chain", CHAIN_PATH, workflow)


def loop_playbook(items: int) -> str:
    """One step looping a noop over `items` elements, all in flight at once (no max_in_flight)."""
    return tool_loop_playbook(items, {"kind": "noop"}, name="dispatch_loop", path=LOOP_PATH)


def tool_loop_playbook(items: int, tool: dict[str, Any], *, name: str, path: str) -> str:
    """One step looping `tool` over `items` elements (the iterator is `item`), all in flight at once."""
    if items < 1:
        raise ValueError(f"a loop needs at least 1 item, got {items}")
    workflow = [{"step": "fan_out",
                 "loop": {"in": "{{ range(workload.items) | list }}", "iterator": "item",
                          "spec": {"mode": "parallel"}},
                 "tool": tool}]
    return _playbook(name, path, workflow, workload={"items": items})
