"""The proposals suite: diagnoses -> the proposals the agent would make, scored. PURE and fast (no stack).

    python -m evals.suites.proposals.runner [--json]
    noetl eval proposals [--json]

Two sets of diagnoses: the hand-written ones of cases.py (every root-cause type x transience, and the
step shapes that change the answer), and the diagnosis suite's cases (evals/suites/diagnosis/cases.yaml:
the diagnosis each real failing playbook should get, with the step read from that playbook). For each,
the drafts of `agents.proposals.from_diagnosis.plan` are compared with the expected overlay fields, and
every draft is checked against the guardrails (`policies.guards`): within the numeric bounds, no retry for
a permanent failure, and passing every guard of a fresh step. The targets are 100 % of each.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.proposals.from_diagnosis import plan
from engine.net.validate import validate_text
from evals.suites.proposals.cases import PLAIN_EXPECTED, POOLS, TRANSIENCE, Case, cases, diagnosis
from policies.apply import step_info
from policies.guards import GuardInput, GuardrailConfig, check, within_bounds

DIAGNOSIS_SUITE = Path(__file__).resolve().parents[1] / "diagnosis"
TARGETS = {"expected_match": 1.0, "within_bounds": 1.0, "guardrails_pass": 1.0}


@dataclass
class Report:
    cases: int = 0
    fixtures: int = 0
    diagnosis_cases: int = 0
    matched: int = 0
    proposals: int = 0
    within_bounds: int = 0
    guardrails_pass: int = 0
    retries_for_permanent: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)

    def rate(self, count: int, total: int) -> float:
        return round(count / total, 4) if total else 1.0

    def as_json(self) -> dict[str, Any]:
        figures = {"expected_match": self.rate(self.matched, self.cases),
                   "within_bounds": self.rate(self.within_bounds, self.proposals),
                   "guardrails_pass": self.rate(self.guardrails_pass, self.proposals)}
        ok = all(figures[k] >= v for k, v in TARGETS.items()) and self.retries_for_permanent == 0
        return {"suite": "proposals", "cases": self.cases, "fixtures": self.fixtures,
                "diagnosis_cases": self.diagnosis_cases, "proposals": self.proposals, **figures,
                "retries_for_permanent": self.retries_for_permanent, "targets": {**TARGETS,
                                                                                 "retries_for_permanent": 0},
                "ok": ok, "mismatches": self.mismatches, "refusals": self.refusals}

    @property
    def ok(self) -> bool:
        return bool(self.as_json()["ok"])


def score(case: Case, report: Report, config: GuardrailConfig) -> None:
    config = config.with_pools(case.pools)
    result = plan(case.diagnosis, case.step, config, case.pools)
    report.cases += 1
    fields = set(result.drafts[0].change.fields()) if result.drafts and result.drafts[0].change else set()
    values = result.drafts[0].change.overlay() if result.drafts and result.drafts[0].change else {}
    wrong_values = {k: values.get(k) for k, v in case.values.items() if values.get(k) != v}
    if fields == set(case.expected) and not wrong_values and len(result.drafts) <= 1:
        report.matched += 1
    else:
        report.mismatches.append({"case": case.name, "expected": sorted(case.expected),
                                  "proposed": sorted(fields),
                                  "wrong_values": wrong_values, "notes": result.notes})
    for draft in result.drafts:
        assert draft.change is not None
        report.proposals += 1
        if within_bounds(draft.change, config, case.step):
            report.within_bounds += 1
        if draft.change.retry is not None and draft.effective_transience == "permanent":
            report.retries_for_permanent += 1
        violations = check(GuardInput(draft=draft, step=case.step), config)
        if not violations:
            report.guardrails_pass += 1
        else:
            report.refusals.append({"case": case.name, "violations": [v.message for v in violations]})


def diagnosis_cases(suite: Path = DIAGNOSIS_SUITE) -> list[Case]:
    """The diagnosis suite's expectations as diagnoses, with the expected proposal by the rules."""
    manifest = suite / "cases.yaml"
    if not manifest.exists():
        return []
    out: list[Case] = []
    for entry in (yaml.safe_load(manifest.read_text()) or {}).get("cases") or []:
        text = (suite / "playbooks" / entry["file"]).read_text()
        playbook = validate_text(text, entry["file"]).playbook
        if playbook is None:
            continue
        kind, transience, name = entry["root_cause_type"], entry["transience"], entry["root_cause_step"]
        step = step_info(playbook.metadata.catalog_path, playbook, name)
        expected = set(PLAIN_EXPECTED[kind][TRANSIENCE.index(transience)])
        if kind in ("timeout", "db_timeout") and step.timeout_s is None:
            expected.discard("timeout_s")
        if kind == "rate_limit" and step.loop_parallel:
            expected.add("max_in_flight")
        out.append(Case(f"diagnosis/{entry['file']}", diagnosis(kind, transience, step), step,
                        frozenset(expected), pools=POOLS))
    return out


def run(config: GuardrailConfig | None = None, *, with_diagnosis_suite: bool = True) -> Report:
    config = config or GuardrailConfig()
    report = Report()
    fixtures = cases()
    extra = diagnosis_cases() if with_diagnosis_suite else []
    report.fixtures, report.diagnosis_cases = len(fixtures), len(extra)
    for case in [*fixtures, *extra]:
        score(case, report, config)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (the default)")
    parser.parse_args(argv)
    report = run()
    print(json.dumps(report.as_json(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
