"""Diagnoses -> proposal drafts: the expected change per root cause, never a retry for a permanent failure,
every value inside the guardrails (the proposals eval, run here in full)."""

from __future__ import annotations

import pytest

from agents.diagnosis.model import Diagnosis, SuggestedFix
from agents.proposals.from_diagnosis import from_diagnosis, plan, retry_rule
from engine.protocol.results import ERROR_KINDS
from evals.suites.proposals import runner
from policies.guards import GuardrailConfig
from policies.model import StepInfo

STEP = StepInfo(path="p", step="s", timeout_s=10.0)


def test_the_proposals_eval_meets_its_targets() -> None:
    report = runner.run().as_json()
    assert report["ok"], report
    assert report["expected_match"] == report["within_bounds"] == report["guardrails_pass"] == 1.0
    assert report["retries_for_permanent"] == 0 and report["proposals"] > 40
    assert report["fixtures"] >= 3 * len(ERROR_KINDS)


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_never_a_retry_for_a_permanent_failure(kind: str) -> None:
    diagnosis = Diagnosis(execution_id="x", playbook_path="p", status="failed", failed_step="s",
                          root_cause_step="s", root_cause_type=kind, transience="permanent", confidence=1,
                          summary="broken", suggested_fixes=[SuggestedFix(
                              kind="retry_rule", description="retry",
                              change={"step": "s", "set": {"retry": {"max_attempts": 5}}})])
    for draft in from_diagnosis(diagnosis, STEP, pools=("default", "big")):
        assert draft.change is not None and draft.change.retry is None


def test_a_flaky_step_gets_a_retry_on_its_error_kind_from_the_real_model() -> None:
    diagnosis = Diagnosis(execution_id="x1", playbook_path="p", status="failed", failed_step="s",
                          root_cause_step="s", root_cause_type="connection", transience="intermittent",
                          confidence=0.8, summary="Resets now and then.")
    [draft] = from_diagnosis(diagnosis, STEP)
    assert draft.target.step == "s" and draft.transience == "intermittent" and draft.evidence == ["x1"]
    assert draft.diagnosis is not None and draft.diagnosis["root_cause_type"] == "connection"
    rule = draft.change.retry if draft.change else None
    assert rule is not None and rule.then is not None
    assert rule.when == "{{ output.status == 'error' and output.error.kind == 'connection' }}"
    assert (rule.then.do, rule.then.attempts, rule.then.backoff) == ("retry", 4, "exponential")


def test_rules_stay_in_bounds_even_when_hints_ask_for_more() -> None:
    config = GuardrailConfig(max_attempts=4, max_delay_s=10)
    rule = retry_rule("rate_limit", "transient", config, {"max_attempts": 99, "initial_delay": 500,
                                                           "retry_on_status": [429]})
    assert rule["then"]["attempts"] == 4 and rule["then"]["delay"] == 10 and rule["then"]["max_delay"] == 10
    assert "[429]" in rule["when"]


def test_what_is_left_out_is_explained() -> None:
    result = plan({"root_cause_type": "sql_syntax", "transience": "permanent", "root_cause_step": "s",
                   "playbook_path": "p"}, STEP)
    assert result.drafts == [] and any("permanent" in n for n in result.notes)
