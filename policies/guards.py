"""The guardrails every proposal passes before it is stored: PURE (no I/O, no clock).

`check(GuardInput, GuardrailConfig) -> [Violation]` runs every guard; an empty list means the change may be
proposed. One guard per rule, each a function of its own, so each has a test that it refuses what it must:

- `allowed_fields`     only the overlay's fields (retry, timeout_s, pool, prefer, require, max_in_flight)
- `step_exists`        the target step is in the playbook's latest catalog version
- `retry_bounds`       a retry rule is `{when, then: {do: retry}}` with 2..max_attempts attempts and a delay,
                       max_delay and multiplier within bounds
- `no_retry_when_permanent`  no retry for a failure diagnosed as permanent
- `timeout_bounds`     min_timeout_s <= timeout_s <= max_timeout_s
- `concurrency_bounds` 1 <= max_in_flight <= max_in_flight bound, and only on a loop step
- `pool_known`         the pool is one the deployment knows, and can fit what the step holds
- `labels_valid`       prefer/require: 1..max_labels plain labels
- `changes_something`  the change differs from the step's active overlay
- `rate_limit`         at most N proposals per step in the window (default 3 a day)
- `one_open_proposal`  no change to a step with an open proposal (proposed, approved or applied)
- `rollback_valid`     a rollback names an applied or verified change whose version is still active
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.model import is_template
from engine.dsl.overlay import OVERLAY_FIELDS
from policies.model import LABEL_PATTERN, OverlayChange, Proposal, ProposalDraft, RiskTier, StepInfo, Target

_LABEL = re.compile(LABEL_PATTERN)


@dataclass(frozen=True)
class GuardrailConfig:
    """The bounds. Pools: until pools are declared (issue 8) the known pools are those workers serve."""

    max_attempts: int = 10
    max_delay_s: float = 300.0  # the longest wait between attempts (delay and max_delay)
    max_multiplier: float = 10.0
    min_timeout_s: float = 1.0
    max_timeout_s: float = 3600.0
    max_in_flight: int = 256
    max_labels: int = 10
    known_pools: frozenset[str] = frozenset({"default"})
    pool_capacity: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # pool -> {cpu: 8, ...}
    max_proposals_per_step: int = 3  # within `rate_window_s`
    rate_window_s: float = 86400.0

    def with_pools(self, pools: Sequence[str]) -> GuardrailConfig:
        from dataclasses import replace

        return replace(self, known_pools=frozenset(self.known_pools) | frozenset(pools))


@dataclass(frozen=True)
class Violation:
    code: str
    field: str
    message: str
    fix: str | None = None


@dataclass(frozen=True)
class OpenProposal:
    id: str
    kind: str
    state: str
    rollback_of: str | None = None


@dataclass(frozen=True)
class GuardInput:
    """Everything the guards look at; the service reads it from the store."""

    draft: ProposalDraft
    step: StepInfo | None  # None: the playbook or the step is not in the catalog
    open_proposals: Sequence[OpenProposal] = ()  # open proposals of the same step
    recent_proposals: int = 0  # change proposals of the same step within the rate window
    rolled_back: Proposal | None = None  # for a rollback: the change it undoes
    raw_change: Mapping[str, Any] | None = None  # the change as submitted, before parsing


Guard = Callable[[GuardInput, GuardrailConfig], list[Violation]]


def allowed_fields(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    raw = inp.raw_change if inp.raw_change is not None else (
        inp.draft.change.overlay() if inp.draft.change else {})
    unknown = sorted(set(raw) - set(OVERLAY_FIELDS))
    return [Violation("field_not_allowed", f"change.{key}",
                      f"'{key}' is not a field a proposal may change",
                      f"change only {', '.join(OVERLAY_FIELDS)}") for key in unknown]


def step_exists(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    if inp.step is None or not inp.step.exists:
        target = inp.draft.target
        return [Violation("unknown_step", "target.step",
                          f"playbook '{target.path}' has no step '{target.step}' in its latest "
                          "catalog version",
                          "name a step of the registered playbook (noetl catalog show PATH)")]
    return []


def retry_bounds(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    change = inp.draft.change
    if change is None or change.retry is None:
        return []
    rule = change.retry
    out: list[Violation] = []
    if rule.else_ is not None or rule.then is None:
        return [Violation("retry_shape", "change.retry", "a retry is a rule {when, then: {do: retry, ...}}, "
                          "not an 'else' rule", "write when: \"{{ output.status == 'error' }}\"")]
    then = rule.then
    if then.do != "retry":
        out.append(Violation("retry_shape", "change.retry.then.do",
                             f"a retry rule does 'retry', not '{then.do}'", "set then.do: retry"))
    if then.set is not None or then.to is not None:
        out.append(Violation("retry_shape", "change.retry.then",
                             "a retry rule may not write state ('set') or jump ('to')", "remove them"))
    if not (rule.when is True or is_template(rule.when)):
        out.append(Violation("retry_shape", "change.retry.when",
                             f"'when' must be a template (or true), got {rule.when!r}",
                             "write when: \"{{ output.status == 'error' }}\""))
    attempts = then.attempts if then.attempts is not None else 3
    if not 2 <= attempts <= config.max_attempts:
        out.append(Violation("retry_attempts", "change.retry.then.attempts",
                             f"{attempts} attempts is outside 2..{config.max_attempts}",
                             f"ask for 2 to {config.max_attempts} attempts in total"))
    if then.delay > config.max_delay_s:
        out.append(Violation("retry_delay", "change.retry.then.delay",
                             f"a delay of {then.delay:g} s is above the {config.max_delay_s:g} s bound",
                             f"wait at most {config.max_delay_s:g} s between attempts"))
    if then.max_delay is not None and then.max_delay > config.max_delay_s:
        out.append(Violation("retry_delay", "change.retry.then.max_delay",
                             f"max_delay {then.max_delay:g} s is above the {config.max_delay_s:g} s bound",
                             f"cap the backoff at {config.max_delay_s:g} s or less"))
    if then.backoff == "exponential" and then.multiplier > config.max_multiplier:
        out.append(Violation("retry_delay", "change.retry.then.multiplier",
                             f"multiplier {then.multiplier:g} is above {config.max_multiplier:g}",
                             f"use a multiplier of at most {config.max_multiplier:g}"))
    if then.backoff == "exponential" and then.max_delay is None and then.delay > 0:
        longest = then.delay * then.multiplier ** max(0, attempts - 2)
        if longest > config.max_delay_s:
            out.append(Violation("retry_delay", "change.retry.then.max_delay",
                                 f"the backoff grows to {longest:g} s, above the "
                                 f"{config.max_delay_s:g} s bound",
                                 f"set max_delay to {config.max_delay_s:g} s or less, or fewer attempts"))
    return out


def no_retry_when_permanent(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    change = inp.draft.change
    if change is not None and change.retry is not None and inp.draft.effective_transience == "permanent":
        return [Violation("retry_for_permanent_failure", "change.retry",
                          "the failure was diagnosed as permanent: retrying it would only fail again, later",
                          "fix the cause (code, query, credential, input) instead of retrying")]
    return []


def timeout_bounds(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    change = inp.draft.change
    if change is None or change.timeout_s is None:
        return []
    if not config.min_timeout_s <= change.timeout_s <= config.max_timeout_s:
        return [Violation("timeout_bounds", "change.timeout_s",
                          f"a timeout of {change.timeout_s:g} s is outside "
                          f"{config.min_timeout_s:g}..{config.max_timeout_s:g} s",
                          f"ask for {config.min_timeout_s:g} to {config.max_timeout_s:g} s")]
    return []


def concurrency_bounds(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    change = inp.draft.change
    if change is None or change.max_in_flight is None:
        return []
    out: list[Violation] = []
    if not 1 <= change.max_in_flight <= config.max_in_flight:
        out.append(Violation("concurrency_bounds", "change.max_in_flight",
                             f"max_in_flight {change.max_in_flight} is outside 1..{config.max_in_flight}",
                             f"ask for 1 to {config.max_in_flight}"))
    if inp.step is not None and inp.step.exists and not inp.step.has_loop:
        out.append(Violation("concurrency_needs_loop", "change.max_in_flight",
                             f"step '{inp.step.step}' has no loop: max_in_flight does not apply to it",
                             "propose a retry with backoff for a rate-limited step without a loop"))
    return out


def pool_known(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    change = inp.draft.change
    if change is None or change.pool is None:
        return []
    pool = change.pool
    if pool not in config.known_pools:
        return [Violation("unknown_pool", "change.pool",
                          f"pool '{pool}' is not a pool of this deployment",
                          f"pick one of {', '.join(sorted(config.known_pools))}")]
    capacity = config.pool_capacity.get(pool)
    if capacity is None or inp.step is None:
        return []
    out = []
    for resource, amount in sorted(inp.step.needs.items()):
        limit = capacity.get(resource)
        if limit is not None and amount > limit:
            out.append(Violation("pool_too_small", "change.pool",
                                 f"step '{inp.step.step}' holds {resource}={amount:g} but pool '{pool}' has "
                                 f"{limit:g}", "pick a pool whose capacity fits the step"))
    return out


def labels_valid(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    change = inp.draft.change
    out: list[Violation] = []
    for name in ("prefer", "require"):
        labels = getattr(change, name) if change is not None else None
        if labels is None:
            continue
        if not 1 <= len(labels) <= config.max_labels:
            out.append(Violation("labels", f"change.{name}", f"{name} lists {len(labels)} labels",
                                 f"list 1 to {config.max_labels} hardware labels"))
        bad = [label for label in labels if not _LABEL.match(label)]
        if bad:
            out.append(Violation("labels", f"change.{name}", f"{name} has labels that are not plain names: "
                                 f"{', '.join(repr(b) for b in bad[:5])}",
                                 "use letters, digits, '.', '_' and '-' (e.g. a100)"))
    return out


def changes_something(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    change = inp.draft.change
    if change is None or inp.step is None:
        return []
    current = inp.step.overlay
    new = change.overlay()
    if all(current.get(key) == value for key, value in new.items()):
        return [Violation("no_op", "change", "the step's active overlay already has these values",
                          "propose a change that differs from the active overlay (noetl policies show)")]
    return []


def rate_limit(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    if inp.draft.kind != "change" or inp.recent_proposals < config.max_proposals_per_step:
        return []
    hours = config.rate_window_s / 3600
    return [Violation("rate_limit", "target",
                      f"step '{inp.draft.target.step}' of '{inp.draft.target.path}' already had "
                      f"{inp.recent_proposals} proposals in the last {hours:g} h "
                      f"(at most {config.max_proposals_per_step})",
                      "wait, and look at why the earlier changes did not hold")]


def one_open_proposal(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    others = [p for p in inp.open_proposals
              if not (inp.draft.kind == "rollback" and p.id == inp.draft.rollback_of)]
    return [Violation("open_proposal", "target",
                      f"step '{inp.draft.target.step}' has an open proposal {p.id} ({p.state})",
                      "approve, reject or verify it first (noetl proposals show ID)") for p in others[:1]]


def rollback_valid(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    if inp.draft.kind != "rollback":
        return []
    undone = inp.rolled_back
    if undone is None:
        return [Violation("rollback_target", "rollback_of", f"no proposal '{inp.draft.rollback_of}'",
                          "name an applied proposal")]
    out = []
    if undone.kind != "change" or undone.state not in ("applied", "verified"):
        out.append(Violation("rollback_target", "rollback_of",
                             f"proposal {undone.id} is a {undone.kind} in state {undone.state}: only an "
                             "applied or verified change can be rolled back", "name an applied change"))
    elif inp.step is not None and inp.step.overlay_version != undone.applied_version:
        out.append(Violation("rollback_target", "rollback_of",
                             f"the step's active overlay is version {inp.step.overlay_version}, not "
                             f"{undone.applied_version} which proposal {undone.id} made",
                             "roll back the latest change of the step first"))
    if undone.target != inp.draft.target:
        out.append(Violation("rollback_target", "target",
                             "a rollback targets the step of the change it undoes",
                             f"target {undone.target.path} step {undone.target.step}"))
    return out


GUARDS: tuple[Guard, ...] = (allowed_fields, step_exists, retry_bounds, no_retry_when_permanent,
                             timeout_bounds, concurrency_bounds, pool_known, labels_valid, changes_something,
                             rate_limit, one_open_proposal, rollback_valid)


def check(inp: GuardInput, config: GuardrailConfig) -> list[Violation]:
    """Every violation of every guard (empty: the proposal may be stored)."""
    return [violation for guard in GUARDS for violation in guard(inp, config)]


def within_bounds(change: OverlayChange, config: GuardrailConfig, step: StepInfo | None = None) -> bool:
    """Whether a change keeps every numeric bound, whatever the state of the store (the eval's check)."""
    draft = ProposalDraft(target=Target(path=step.path if step else "-", step=step.step if step else "-"),
                          change=change, rationale="bounds check")
    inp = GuardInput(draft=draft, step=step)
    return not any(guard(inp, config) for guard in (retry_bounds, timeout_bounds, concurrency_bounds,
                                                     pool_known, labels_valid))


def risk_of(change: OverlayChange | None, step: StepInfo | None) -> RiskTier:
    """low: a bounded retry or a longer timeout; medium: more retries, another pool or less concurrency;
    high: hardware requirements, or a shorter timeout (it can fail runs that pass today)."""
    if change is None:
        return "low"  # a rollback restores what ran before
    risk: RiskTier = "low"
    if change.require is not None:
        return "high"
    current = step.timeout_s if step is not None else None
    if change.timeout_s is not None and current is not None and change.timeout_s < current:
        return "high"
    if change.pool is not None or change.prefer is not None or change.max_in_flight is not None:
        risk = "medium"
    if change.retry is not None and change.retry.then is not None and (change.retry.then.attempts or 3) > 5:
        risk = "medium"
    return risk
