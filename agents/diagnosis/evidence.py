"""Gathering the evidence for a diagnosis from the control plane's execution service (never its store).

`gather(execution_id, executions)` reads the execution, all of its events, its summary (results behind
references resolved) and the step outcomes of the other runs of the same playbook path (the history that
tells a flaky step from a broken one), and folds them into `Facts` (agents.diagnosis.facts, pure). Another
run counts as "the same conditions" when it ran the same playbook (the same catalog version, or the same
text registered again) with the same payload.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agents.diagnosis.facts import Facts, PastRun, collect, outcomes
from engine.protocol.events import Event

if TYPE_CHECKING:
    from control_plane.services.executions import ExecutionService

log = logging.getLogger(__name__)

PAGE = 1000
MAX_EVENTS = 20_000  # an execution with more is diagnosed from its first events (and says so)
HISTORY_RUNS = 20  # other runs of the same playbook path read for the history of its steps
HISTORY_EVENTS = 5_000


async def read_events(executions: ExecutionService, execution_id: str,
                      limit: int = MAX_EVENTS) -> tuple[list[Event], bool]:
    """Every event of the execution in order (at most `limit`); True when there were more."""
    events: list[Event] = []
    after = 0
    while len(events) < limit:
        page = await executions.events(execution_id, after_seq=after, limit=PAGE)
        events.extend(page)
        if len(page) < PAGE:
            return events, False
        after = max(e.seq or after for e in page)
    return events[:limit], True


def playbook_text(events: list[Event]) -> str | None:
    """The playbook text an execution ran (from its execution.started event)."""
    for event in events:
        if event.type == "execution.started":
            text = event.payload.get("playbook")
            return text if isinstance(text, str) else None
    return None


async def gather(execution_id: str, executions: ExecutionService, *,
                 history_runs: int = HISTORY_RUNS) -> Facts:
    """The facts of one execution and of its playbook's other runs. NotFoundError for an unknown id."""
    execution = await executions.get(execution_id)
    events, truncated = await read_events(executions, execution_id)
    try:
        summary: dict[str, Any] | None = await executions.summary(execution_id)
    except Exception as exc:  # a result behind a reference that cannot be read: go on without it
        log.warning("diagnosis: the summary of %s could not be built (%s)", execution_id, exc)
        summary = None
    history: list[PastRun] = []
    gaps: list[str] = []
    text = playbook_text(events)
    if truncated:
        gaps.append(f"the execution has more than {MAX_EVENTS} events: only the first were read")
    try:
        page = await executions.list(path=execution.playbook_path, limit=history_runs + 1) if history_runs \
            else None
        for other in page.items if page is not None else ():
            if other.execution_id == execution_id:
                continue
            other_events, _ = await read_events(executions, other.execution_id, HISTORY_EVENTS)
            same_playbook = (other.playbook_version == execution.playbook_version
                             or (text is not None and playbook_text(other_events) == text))
            history.append(PastRun(
                execution_id=other.execution_id, created_at=other.created_at, status=other.status,
                same_conditions=same_playbook and other.payload == execution.payload,
                steps=outcomes(other_events)))
    except Exception as exc:  # the history is evidence, not a precondition
        log.warning("diagnosis: the history of %s could not be read (%s)", execution.playbook_path, exc)
        gaps.append(f"the other runs of '{execution.playbook_path}' could not be read ({type(exc).__name__})")
    status = execution.status
    if summary is not None and summary.get("status") in ("completed", "failed", "cancelled"):
        status = str(summary["status"])
    facts = collect(execution_id, events, status=status, summary=summary, path=execution.playbook_path,
                    version=execution.playbook_version, payload=execution.payload,
                    created_at=execution.created_at, history=history)
    facts.gaps.extend(gaps)
    return facts
