"""Every guardrail refuses what it must (and a sound change passes them all)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from policies import guards
from policies.guards import GuardInput, GuardrailConfig, OpenProposal, check
from policies.model import Proposal, ProposalDraft, StepInfo

CONFIG = GuardrailConfig(known_pools=frozenset({"default", "gpu"}),
                         pool_capacity={"gpu": {"gpu": 1, "memory_mb": 16000}})
STEP = StepInfo(path="p", step="s", has_loop=True, loop_parallel=True, max_in_flight=8, timeout_s=30)
RETRY = {"when": "{{ output.status == 'error' }}",
         "then": {"do": "retry", "attempts": 3, "backoff": "exponential", "delay": 1, "max_delay": 30}}


def draft(change: dict[str, Any] | None = None, **more: Any) -> ProposalDraft:
    return ProposalDraft.model_validate({"target": {"path": "p", "step": "s"}, "change": change or
                                         {"timeout_s": 60}, "rationale": "test", **more})


def codes(inp: GuardInput, config: GuardrailConfig = CONFIG) -> list[str]:
    return [v.code for v in check(inp, config)]


def applied(**fields: Any) -> Proposal:
    now = datetime.now(UTC)
    base = {"id": "x1", "kind": "change", "target": {"path": "p", "step": "s"}, "change": {"timeout_s": 60},
            "rationale": "r", "author": "agent:proposals", "risk": "low", "state": "applied",
            "created_at": now, "updated_at": now, "applied_version": 2, "base_version": 1}
    return Proposal.model_validate({**base, **fields})


def test_a_sound_change_passes_every_guardrail() -> None:
    change = {"retry": RETRY, "timeout_s": 60, "pool": "gpu", "prefer": ["a100"], "max_in_flight": 4}
    assert codes(GuardInput(draft(change, transience="intermittent"), STEP)) == []


def test_only_overlay_fields_may_change() -> None:
    inp = GuardInput(draft(), STEP, raw_change={"timeout_s": 60, "code": "import os", "tool": {}})
    assert [v.field for v in guards.allowed_fields(inp, CONFIG)] == ["change.code", "change.tool"]


def test_an_unknown_step_is_refused() -> None:
    assert codes(GuardInput(draft(), None)) == ["unknown_step"]
    assert codes(GuardInput(draft(), StepInfo(path="p", step="s", exists=False))) == ["unknown_step"]


@pytest.mark.parametrize(("then", "field"), [
    ({"do": "retry", "attempts": 11}, "attempts"),
    ({"do": "retry", "attempts": 1}, "attempts"),
    ({"do": "retry", "attempts": 3, "delay": 301}, "delay"),
    ({"do": "retry", "attempts": 3, "delay": 1, "max_delay": 3600}, "max_delay"),
    ({"do": "retry", "attempts": 3, "backoff": "exponential", "delay": 1, "multiplier": 50}, "multiplier"),
    ({"do": "retry", "attempts": 10, "backoff": "exponential", "delay": 10, "multiplier": 3}, "max_delay"),
    ({"do": "fail"}, "do"),
    ({"do": "retry", "attempts": 3, "set": {"ctx.x": 1}}, "then"),
])
def test_a_retry_outside_the_bounds_is_refused(then: dict[str, Any], field: str) -> None:
    violations = guards.retry_bounds(GuardInput(draft({"retry": {"when": True, "then": then}}), STEP), CONFIG)
    assert violations and violations[0].field.endswith(field), violations


def test_a_retry_rule_needs_a_template_condition_and_no_else() -> None:
    plain = guards.retry_bounds(GuardInput(draft({"retry": {"when": "always", "then": RETRY["then"]}}), STEP),
                                CONFIG)
    assert [v.field for v in plain] == ["change.retry.when"]
    orphan = guards.retry_bounds(GuardInput(draft({"retry": {"else": {"then": RETRY["then"]}}}), STEP),
                                 CONFIG)
    assert [v.code for v in orphan] == ["retry_shape"]


def test_no_retry_for_a_permanent_failure() -> None:
    for how in ({"transience": "permanent"}, {"diagnosis": {"transience": "permanent"}}):
        assert codes(GuardInput(draft({"retry": RETRY}, **how), STEP)) == ["retry_for_permanent_failure"]
    assert codes(GuardInput(draft({"timeout_s": 60}, transience="permanent"), STEP)) == []


@pytest.mark.parametrize("seconds", [0.5, 3601])
def test_a_timeout_outside_the_bounds_is_refused(seconds: float) -> None:
    assert codes(GuardInput(draft({"timeout_s": seconds}), STEP)) == ["timeout_bounds"]


def test_concurrency_is_bounded_and_only_for_loops() -> None:
    assert codes(GuardInput(draft({"max_in_flight": 257}), STEP)) == ["concurrency_bounds"]
    no_loop = StepInfo(path="p", step="s")
    assert codes(GuardInput(draft({"max_in_flight": 2}), no_loop)) == ["concurrency_needs_loop"]


def test_a_pool_must_be_known_and_fit_the_step() -> None:
    assert codes(GuardInput(draft({"pool": "tpu"}), STEP)) == ["unknown_pool"]
    big = StepInfo(path="p", step="s", needs={"gpu": 2, "memory_mb": 8000})
    violations = check(GuardInput(draft({"pool": "gpu"}), big), CONFIG)
    assert [v.code for v in violations] == ["pool_too_small"] and "gpu=2" in violations[0].message
    assert codes(GuardInput(draft({"pool": "gpu"}), StepInfo(path="p", step="s", needs={"gpu": 1}))) == []


def test_hardware_labels_are_plain_and_bounded() -> None:
    assert codes(GuardInput(draft({"prefer": ["a100; rm -rf /"]}), STEP)) == ["labels"]
    assert codes(GuardInput(draft({"require": [f"l{i}" for i in range(11)]}), STEP)) == ["labels"]
    assert codes(GuardInput(draft({"require": []}), STEP)) == ["labels"]


def test_a_change_must_change_something() -> None:
    current = STEP.model_copy(update={"overlay": {"timeout_s": 60.0, "pool": "gpu"}})
    assert codes(GuardInput(draft({"timeout_s": 60}), current)) == ["no_op"]
    assert codes(GuardInput(draft({"timeout_s": 90}), current)) == []


def test_proposals_per_step_are_rate_limited() -> None:
    assert codes(GuardInput(draft(), STEP, recent_proposals=3)) == ["rate_limit"]
    assert codes(GuardInput(draft(), STEP, recent_proposals=2)) == []


def test_no_change_to_a_step_with_an_open_proposal() -> None:
    open_ = [OpenProposal("other", "change", "applied")]
    violations = check(GuardInput(draft(), STEP, open_proposals=open_), CONFIG)
    assert [v.code for v in violations] == ["open_proposal"] and "other" in violations[0].message


def test_a_rollback_undoes_the_active_applied_change_only() -> None:
    rollback = ProposalDraft.model_validate({"target": {"path": "p", "step": "s"}, "kind": "rollback",
                                             "rollback_of": "x1", "rationale": "worse"})
    active = STEP.model_copy(update={"overlay_version": 2})
    open_ = [OpenProposal("x1", "change", "applied")]
    assert codes(GuardInput(rollback, active, open_proposals=open_, rolled_back=applied())) == []
    assert codes(GuardInput(rollback, active, rolled_back=None)) == ["rollback_target"]
    assert codes(GuardInput(rollback, active, rolled_back=applied(state="rejected"))) == ["rollback_target"]
    later = STEP.model_copy(update={"overlay_version": 3})
    assert codes(GuardInput(rollback, later, rolled_back=applied())) == ["rollback_target"]
    elsewhere = applied(target={"path": "p", "step": "other"})
    assert codes(GuardInput(rollback, active, rolled_back=elsewhere)) == ["rollback_target"]


def test_every_guard_is_in_the_check() -> None:
    named = {name for name in dir(guards) if callable(getattr(guards, name)) and getattr(
        getattr(guards, name), "__module__", "") == "policies.guards" and name not in (
        "check", "within_bounds", "risk_of", "GuardrailConfig", "Violation", "OpenProposal", "GuardInput")}
    assert named == {g.__name__ for g in guards.GUARDS}


def test_risk_tiers() -> None:
    assert guards.risk_of(draft({"retry": RETRY}).change, STEP) == "low"
    assert guards.risk_of(draft({"pool": "gpu"}).change, STEP) == "medium"
    assert guards.risk_of(draft({"timeout_s": 5}).change, STEP) == "high"
    assert guards.risk_of(draft({"require": ["h100"]}).change, STEP) == "high"
