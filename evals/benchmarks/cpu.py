"""CPU seconds by process for the benchmarks: where the machine's cores went, beside the wall clock.

On a 2-core machine throughput is bounded by CPU: N items/s cannot exceed cores / (CPU seconds per
item, summed over every process that handles it). The dispatch benchmark reports that sum for the
floor and for the engine, so a ratio that misses its target says which process spends the time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any


def cpu_seconds(pids: Mapping[str, int], *, own: str | None = None) -> dict[str, float]:
    """user + system CPU seconds used so far by each named process and its live children (a Postgres
    server and its backends), plus this process and the children it has reaped as `own` when given;
    {} without psutil."""
    try:
        import psutil
    except ImportError:
        return {}
    used: dict[str, float] = {}
    if own is not None:
        me = psutil.Process()
        times = me.cpu_times()
        used[own] = times.user + times.system + times.children_user + times.children_system
    for name, pid in pids.items():
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            continue
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        used[name] = total
    return used


def children_of_self() -> dict[str, int]:
    """The live child processes of this one by `name-pid` (worker pools, floor consumers)."""
    try:
        import psutil
    except ImportError:
        return {}
    return {f"child-{proc.pid}": proc.pid for proc in psutil.Process().children()}


def per_unit_ms(before: Mapping[str, float], after: Mapping[str, float], units: int, *,
                children: str = "children") -> dict[str, Any]:
    """CPU milliseconds per unit by process (every `child-*` summed as `children`), and their sum as
    `total`."""
    out: dict[str, float] = {}
    for name, value in after.items():
        key = children if name.startswith("child-") else name
        out[key] = out.get(key, 0.0) + (value - before.get(name, 0.0)) * 1000.0 / max(1, units)
    result: dict[str, Any] = {k: round(v, 3) for k, v in sorted(out.items())}
    result["total"] = round(sum(out.values()), 3)
    return result
