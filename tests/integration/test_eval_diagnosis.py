"""The diagnosis suite itself: its manifest is complete and valid, and its runner scores a few cases on a
real stack (the full suite is `noetl eval diagnosis`)."""

from __future__ import annotations

import pytest

from engine.net.validate import validate_file
from engine.protocol.results import ERROR_KINDS
from evals.suites.diagnosis.runner import FIELDS, PLAYBOOKS, TARGETS, load_cases, run_suite

pytestmark = pytest.mark.anyio



def test_the_manifest_covers_every_playbook_with_valid_expectations() -> None:
    cases = load_cases()
    assert len([c for c in cases if c.status == "failed"]) >= 30
    assert sorted(c.file for c in cases) == sorted(p.name for p in PLAYBOOKS.glob("*.yaml"))
    for case in cases:
        assert case.root_cause_type in ERROR_KINDS, case
        assert case.transience in ("transient", "intermittent", "permanent"), case
        result = validate_file(PLAYBOOKS / case.file)
        assert result.valid(strict=True), [d.format() for d in result.diagnostics]
    kinds = {c.root_cause_type for c in cases}
    assert {"timeout", "connection", "db_connection", "rate_limit", "not_found", "server_error", "auth",
            "missing_credential", "sql_syntax", "db_constraint", "undefined_variable", "python_exception",
            "resource_exhausted", "validation"} <= kinds
    assert {c.transience for c in cases} == {"transient", "intermittent", "permanent"}


async def test_the_runner_scores_cases_on_a_real_stack() -> None:
    cases = ["http_429", "upstream_empty_index", "flaky_python_runs", "postgres_syntax"]
    report = await run_suite(only=cases, similar=None)
    data = report.as_json()
    assert data["cases"] == 4 and not any(r["error"] for r in data["results"])
    assert all(data["accuracy"][f] == 1.0 for f in FIELDS), data["failures"]
    assert data["recall_at_5"] == "not measured" and "turned off" in data["recall_note"]
    assert data["latency_ms"]["p50"] is not None and data["targets"] == TARGETS
