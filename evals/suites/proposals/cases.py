"""Hand-written diagnoses for the proposals suite: every root-cause type x transience on a plain step, and
the shapes that change the answer (a parallel loop, a time limit far above the successful runs, no other
pool, no time limit, suggested fixes asking for out-of-bounds values). Each case says which overlay fields
the proposal must set (an empty set: no proposal at all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.protocol.results import ERROR_KINDS
from policies.model import StepInfo

TRANSIENCE = ("transient", "intermittent", "permanent")
PLAIN = StepInfo(path="eval/plain", step="work", timeout_s=30.0, durations_ms=[18000.0, 24000.0])
LOOP = StepInfo(path="eval/loop", step="work", has_loop=True, loop_parallel=True, max_in_flight=8,
                timeout_s=30.0)
FAST = StepInfo(path="eval/fast", step="work", timeout_s=30.0, durations_ms=[900.0, 1200.0, 1100.0])
UNLIMITED = StepInfo(path="eval/unlimited", step="work")
POOLS = ("default", "large")

# the expected overlay fields for a plain step (a time limit, successful runs near it, another pool known),
# per root-cause type: (transient, intermittent, permanent). Written out, not computed.
PLAIN_EXPECTED: dict[str, tuple[set[str], set[str], set[str]]] = {
    "timeout": ({"timeout_s", "retry"}, {"timeout_s", "retry"}, {"timeout_s"}),
    "db_timeout": ({"timeout_s", "retry"}, {"timeout_s", "retry"}, {"timeout_s"}),
    "connection": ({"retry"}, {"retry"}, set()),
    "db_connection": ({"retry"}, {"retry"}, set()),
    "rate_limit": ({"retry"}, {"retry"}, set()),
    "auth": ({"retry"}, {"retry"}, set()),
    "not_found": ({"retry"}, {"retry"}, set()),
    "client_error": ({"retry"}, {"retry"}, set()),
    "server_error": ({"retry"}, {"retry"}, set()),
    "db_constraint": ({"retry"}, {"retry"}, set()),
    "db_deadlock": ({"retry"}, {"retry"}, set()),
    "parse": ({"retry"}, {"retry"}, set()),
    "missing_credential": ({"retry"}, {"retry"}, set()),
    "sql_syntax": ({"retry"}, {"retry"}, set()),
    "undefined_variable": ({"retry"}, {"retry"}, set()),
    "python_exception": ({"retry"}, {"retry"}, set()),
    "resource_exhausted": ({"pool", "retry"}, {"pool", "retry"}, {"pool"}),
    "cancelled": (set(), set(), set()),
    "validation": ({"retry"}, {"retry"}, set()),
    "contract": ({"retry"}, {"retry"}, set()),
    "internal": ({"retry"}, {"retry"}, set()),
}
assert set(PLAIN_EXPECTED) == set(ERROR_KINDS), "every error kind needs its expected proposal"


@dataclass(frozen=True)
class Case:
    name: str
    diagnosis: dict[str, Any]
    step: StepInfo | None
    expected: frozenset[str]
    pools: tuple[str, ...] = POOLS
    values: dict[str, Any] = field(default_factory=dict)  # expected values of some fields


def diagnosis(kind: str | None, transience: str | None, step: StepInfo, **more: Any) -> dict[str, Any]:
    return {"execution_id": f"eval-{kind}-{transience}", "playbook_path": step.path, "status": "failed",
            "failed_step": step.step, "root_cause_step": step.step, "root_cause_type": kind,
            "transience": transience, "confidence": 0.9, "summary": f"Step '{step.step}' failed with {kind}.",
            **more}


def cases() -> list[Case]:
    out: list[Case] = []
    for kind, expected in PLAIN_EXPECTED.items():
        for transience, fields in zip(TRANSIENCE, expected, strict=True):
            out.append(Case(f"{kind}/{transience}", diagnosis(kind, transience, PLAIN), PLAIN,
                            frozenset(fields)))
    out += [
        Case("rate_limit/parallel loop/transient", diagnosis("rate_limit", "transient", LOOP), LOOP,
             frozenset({"max_in_flight", "retry"}), values={"max_in_flight": 4}),
        Case("rate_limit/parallel loop/permanent", diagnosis("rate_limit", "permanent", LOOP), LOOP,
             frozenset({"max_in_flight"}), values={"max_in_flight": 4}),
        Case("timeout/far below the limit/intermittent", diagnosis("timeout", "intermittent", FAST), FAST,
             frozenset({"retry"})),
        Case("timeout/far below the limit/permanent", diagnosis("timeout", "permanent", FAST), FAST,
             frozenset({"timeout_s"}), values={"timeout_s": 60.0}),
        Case("timeout/near the limit", diagnosis("timeout", "transient", PLAIN), PLAIN,
             frozenset({"timeout_s", "retry"}), values={"timeout_s": 60.0}),
        Case("timeout/no limit, no hint/transient", diagnosis("timeout", "transient", UNLIMITED), UNLIMITED,
             frozenset({"retry"})),
        Case("timeout/no limit, a hinted one/permanent", diagnosis(
            "timeout", "permanent", UNLIMITED, suggested_fixes=[{
                "kind": "timeout", "description": "more time",
                "change": {"step": "work", "set": {"spec": {"timeout": "2m"}}}}]),
             UNLIMITED, frozenset({"timeout_s"}), values={"timeout_s": 120.0}),
        Case("resource_exhausted/no other pool/transient",
             diagnosis("resource_exhausted", "transient", PLAIN), PLAIN, frozenset({"retry"}),
             pools=("default",)),
        Case("resource_exhausted/no other pool/permanent",
             diagnosis("resource_exhausted", "permanent", PLAIN), PLAIN, frozenset(), pools=("default",)),
        Case("resource_exhausted/the largest pool", diagnosis("resource_exhausted", "permanent", PLAIN),
             PLAIN, frozenset({"pool"}), values={"pool": "large"}),
        Case("nothing failed", diagnosis(None, None, PLAIN, status="completed"), PLAIN, frozenset()),
        Case("no step named", {**diagnosis("connection", "transient", PLAIN), "failed_step": None,
                               "root_cause_step": None}, PLAIN, frozenset()),
        Case("the step is gone", diagnosis("connection", "transient", PLAIN),
             StepInfo(path="eval/plain", step="work", exists=False), frozenset()),
        Case("hints out of bounds are clamped", diagnosis(
            "server_error", "transient", PLAIN, suggested_fixes=[{
                "kind": "retry_rule", "description": "retry hard",
                "change": {"step": "work", "set": {"retry": {"max_attempts": 50, "initial_delay": 900,
                                                             "backoff_multiplier": 40,
                                                             "retry_on_status": [502, 503]}}}}]),
             PLAIN, frozenset({"retry"})),
        Case("a huge timeout hint is clamped", diagnosis(
            "timeout", "permanent", PLAIN, suggested_fixes=[{"kind": "timeout", "description": "a day",
                                                             "change": {"step": "work", "set": {
                                                                 "spec": {"timeout": "24h"}}}}]),
             PLAIN, frozenset({"timeout_s"}), values={"timeout_s": 3600.0}),
    ]
    return out
