"""The chat's answers in words, from a diagnosis, similar failures, proposals and executions: PURE.

Every sentence that states a fact read from the event log carries the event it came from in square
brackets ([event 3f2a…]); `Composed.references` lists those event ids, in the order they are cited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.diagnosis.model import Diagnosis

TRANSIENCE_WORDS = {
    "transient": "transient: it came from a passing condition, so a retry of the step is likely to work",
    "intermittent": "intermittent: the same step fails in some runs and passes in others, so a retry with "
                    "backoff usually gets it through",
    "permanent": "permanent: the same input fails the same way every time, so a retry only fails again "
                 "later; the playbook, its code, its data or a credential has to change",
}


@dataclass
class Composed:
    lines: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)

    def say(self, line: str, *events: str | None) -> None:
        cited = [e for e in events if e]
        for event in cited:
            if event not in self.references:
                self.references.append(event)
        self.lines.append(line + (" " + " ".join(f"[event {e}]" for e in cited) if cited else ""))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def headline(d: Diagnosis) -> str:
    """One sentence: which run, which step, which kind of failure, how sure."""
    where = f"execution {d.execution_id}" + (f" of {d.playbook_path}" if d.playbook_path else "")
    if d.root_cause_type is None:
        return f"{where} {d.status}; nothing failed in it."
    step = d.root_cause_step or d.failed_step or "?"
    upstream = (f" (it made step '{d.failed_step}' fail)" if d.failed_step and d.failed_step != step else "")
    return (f"{where} {d.status}: the root cause is a {d.root_cause_type} error at step '{step}'{upstream}; "
            f"{d.transience or 'unknown transience'}, confidence {d.confidence:.2f}.")


def why(out: Composed, d: Diagnosis) -> None:
    out.say(headline(d))
    out.say(d.summary)
    if d.error_message:
        out.say(f"The error: {d.error_message}")
    evidence(out, d)


def evidence(out: Composed, d: Diagnosis, limit: int = 5) -> None:
    if d.evidence:
        out.say("Evidence:")
        for item in d.evidence[:limit]:
            out.say(f"- {item.fact}", item.event_id)
    for gap in d.evidence_gaps[:2]:
        out.say(f"(Not known: {gap})")


def transience(out: Composed, d: Diagnosis) -> None:
    out.say(headline(d))
    if d.transience is None:
        out.say("Nothing failed, so there is no transience to judge.")
        return
    out.say(f"It is {TRANSIENCE_WORDS[d.transience]}.")
    evidence(out, d, limit=3)


def fixes(out: Composed, d: Diagnosis, plan_drafts: Sequence[dict[str, Any]], plan_notes: Sequence[str],
          open_proposals: Sequence[dict[str, Any]]) -> None:
    out.say(headline(d))
    if d.suggested_fixes:
        out.say("What to change:")
        for fix in d.suggested_fixes:
            change = f" ({_compact(fix.change)})" if fix.change else ""
            out.say(f"- {fix.kind}: {fix.description}{change}")
    else:
        out.say("The diagnosis has no concrete change to suggest.")
    for draft in plan_drafts:
        out.say(f"As a guarded configuration change: {_describe_change(draft)} on step "
                f"'{draft['target']['step']}' — say \"propose that\" and I will submit it for approval.")
    for note in plan_notes[:2]:
        out.say(f"(No configuration change: {note})")
    proposals_list(out, open_proposals, empty=None)
    evidence(out, d, limit=3)


def similar(out: Composed, d: Diagnosis) -> None:
    out.say(headline(d))
    if not d.similar_failures:
        gap = next((g for g in d.evidence_gaps if "similar" in g), None)
        out.say("I found no similar past failure" + (f" ({gap})." if gap else "."))
        return
    out.say(f"{len(d.similar_failures)} similar past failure(s):")
    for s in d.similar_failures:
        then = _next(s.next.retried_and_succeeded, s.next.later_run_succeeded, s.next.later_execution_id)
        when = f" on {s.occurred_at:%Y-%m-%d %H:%M}" if s.occurred_at else ""
        out.say(f"- execution {s.execution_id}{when}: step '{s.step}' of {s.playbook_path}, "
                f"{s.error_kind}: {(s.error_message or '')[:160]} (similarity {s.score:.2f}); {then}")


def _next(retried: bool, later_ok: bool | None, later: str | None) -> str:
    if retried:
        return "a retry in the same run got it through"
    if later_ok is True:
        return f"the next run succeeded ({later})"
    if later_ok is False:
        return f"the next run failed too ({later})"
    return "no later run yet"


def proposals_list(out: Composed, proposals: Sequence[dict[str, Any]], *, empty: str | None) -> None:
    if not proposals:
        if empty:
            out.say(empty)
        return
    out.say("Proposals:")
    for p in proposals:
        change = _describe_change(p) if p.get("change") else p.get("kind", "change")
        out.say(f"- {p['id']}: {p['state']} — {change} on {p['target']['path']} step '{p['target']['step']}' "
                f"(risk {p.get('risk')}, by {p.get('author_name') or p.get('author')})")


def proposed(out: Composed, proposal: dict[str, Any]) -> None:
    out.say(f"Proposed {proposal['id']}: {_describe_change(proposal)} on {proposal['target']['path']} step "
            f"'{proposal['target']['step']}', risk {proposal.get('risk')}, now {proposal['state']}. "
            "A person with the approver role (not you) has to approve it before it applies: "
            f"`noetl proposals approve {proposal['id']} --reason ...`.")


def status(out: Composed, execution: dict[str, Any], steps: dict[str, Any],
           terminal_event: str | None) -> None:
    state = execution["status"] if execution["status"] in ("completed", "failed", "cancelled") else (
        f"is {execution['status']}")
    line = (f"execution {execution['execution_id']} of {execution['playbook_path']} {state}"
            f" (started {_when(execution.get('created_at'))}"
            + (f", ended {_when(execution.get('ended_at'))})" if execution.get("ended_at") else ")") + ".")
    out.say(line, terminal_event)
    for name, step in list(steps.items())[:12]:
        error = step.get("error") or {}
        why_ = f": {error.get('kind')}: {str(error.get('message', ''))[:160]}" if error else ""
        out.say(f"- {name}: {step.get('status')}{why_}")


def executions_list(out: Composed, items: Sequence[dict[str, Any]], what: str) -> None:
    if not items:
        out.say(f"No {what}.")
        return
    out.say(f"{len(items)} {what}" + (" (newest first):" if len(items) > 1 else ":"))
    for item in items:
        out.say(f"- {item['execution_id']}: {item['playbook_path']} {item['status']}, started "
                f"{_when(item.get('created_at'))}")


def _when(value: Any) -> str:
    if value is None:
        return "?"
    return value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)


def _compact(change: dict[str, Any]) -> str:
    import json

    text = json.dumps(change, separators=(",", ":"), default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def _describe_change(proposal_or_draft: dict[str, Any]) -> str:
    change = proposal_or_draft.get("change") or {}
    parts: list[str] = []
    retry = change.get("retry")
    if retry:  # a task policy rule: {when, then: {do: retry, attempts, backoff, delay}}
        then = retry.get("then") or {}
        parts.append(f"retry up to {then.get('attempts', '?')} attempts"
                     + (f" ({then['backoff']} backoff from {then.get('delay', 0)} s)"
                        if then.get("backoff") not in (None, "none") else "")
                     + (f" when {retry['when']}" if isinstance(retry.get("when"), str) else ""))
    if change.get("timeout_s"):
        parts.append(f"timeout {change['timeout_s']} s")
    if change.get("pool"):
        parts.append(f"run on pool '{change['pool']}'")
    if change.get("max_in_flight"):
        parts.append(f"at most {change['max_in_flight']} items in flight")
    rest = {k: v for k, v in change.items() if k not in ("retry", "timeout_s", "pool", "max_in_flight") and v}
    if rest:
        parts.append(_compact(rest))
    return ", ".join(parts) if parts else "a change"


def cited_events(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen
