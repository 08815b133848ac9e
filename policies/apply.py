"""Applying approved changes: overlay versions of a step, and the playbook the engine runs. PURE.

An approved change becomes a new version of its step's overlay: the active overlay with the change's fields
set (`merged`). A rollback becomes a new version too, holding what the version before the change held, so
the history only grows. New executions carry the active overlays in their `execution.started` event and
the engine lays them over the catalog's playbook (`engine.dsl.overlay`, reused here): running executions
keep the overlays they started with, and the catalog's text is never changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.dsl.model import Playbook
from engine.dsl.overlay import apply_overlays
from policies.model import OverlayChange, StepInfo

__all__ = ["apply_overlays", "merged", "patched_playbook", "step_info"]


def merged(current: Mapping[str, Any], change: OverlayChange) -> dict[str, Any]:
    """The overlay after the change: the active overlay with the change's fields replaced."""
    return {**dict(current), **change.overlay()}


def patched_playbook(playbook: Playbook, overlays: Mapping[str, Mapping[str, Any]]) -> Playbook:
    """The playbook as the engine runs it under these overlays."""
    return apply_overlays(playbook, overlays)[0]


def step_info(path: str, playbook: Playbook | None, step: str, overlay: Mapping[str, Any] | None = None,
              overlay_version: int | None = None, durations_ms: list[float] | None = None) -> StepInfo:
    """What the guardrails and the proposer know about one step, with its active overlay applied."""
    if playbook is None or not any(s.step == step for s in playbook.workflow):
        return StepInfo(path=path, step=step, exists=False, overlay=dict(overlay or {}),
                        overlay_version=overlay_version)
    effective = patched_playbook(playbook, {step: overlay} if overlay else {}).step(step)
    timeouts = [effective.spec.timeout] + [getattr(t, "timeout", None) for t in effective.tool]
    limits = [float(t) for t in timeouts if isinstance(t, int | float) and not isinstance(t, bool)]
    resources = effective.spec.resources
    needs: dict[str, float] = {}
    if resources is not None:
        for key in ("cpu", "gpu", "memory_mb"):
            value = getattr(resources, key)
            if value is not None:
                needs[key] = float(value)
        for key, value in (resources.model_extra or {}).items():
            needs[key] = float(value)
    loop = effective.loop
    return StepInfo(
        path=path, step=step, exists=True, has_loop=loop is not None,
        loop_parallel=loop is not None and loop.spec.mode == "parallel",
        max_in_flight=loop.spec.max_in_flight  # a template is not known before the run
        if loop is not None and isinstance(loop.spec.max_in_flight, int) else None,
        timeout_s=min(limits) if limits else None,
        pool=resources.pool if resources is not None and resources.pool else "default",
        needs=needs, overlay=dict(overlay or {}), overlay_version=overlay_version,
        durations_ms=list(durations_ms or []))
