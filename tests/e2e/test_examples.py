"""Every example playbook run through the real stack with `noetl run --json`, checking EVERY `# expect:`
line of its header (each test first pins the header's lines, so an edited example cannot silently
outgrow its test). The "with the arc removed" / "changing X to Y" variants run as inline playbooks.
The executions start together when the module starts (a batch); each test reads its own.
Sub-playbooks (09_child, 09_parent) are in test_subplaybooks.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.dsl.load import load_playbook_text
from tests.conftest import EXAMPLES
from tests.e2e.helpers import (
    Batch,
    Case,
    Noetl,
    Outcome,
    completed,
    expect_lines,
    failed,
    make_playbook,
    of_type,
    peak_in_flight_by_order,
    peak_in_flight_by_time,
    timestamp,
    warnings_of,
)
from tests.harness.playbooks import SHORT_FORMS_CANONICAL

RUN_ALSO_AFTER = """\
workflow:
  - step: one
    tool: {kind: python, code: "result = 1"}
    next: {arcs: [{step: two}]}
  - step: two
    tool: {kind: python, input: {x: "{{ one }}"}, code: "result = x + 1"}
"""
ARC_07 = "        - {step: fallback, when: \"{{ event.name == 'call.error' }}\"}\n"
NOTE_13 = '"{{ ctx.note }}"'


def example(name: str, *expected: str) -> Path:
    """The example's path, after checking that its header states exactly the `expected` lines."""
    path = EXAMPLES / name
    assert expect_lines(path) == list(expected), f"{name}: its expect lines changed; update this test"
    return path


def renamed(text: str, old_path: str, new_name: str) -> str:
    """An example's text as a new catalog entry (for variants: never overwrite the example's path)."""
    line = next(x for x in text.splitlines() if x.startswith("metadata:"))
    assert old_path in line, line
    return text.replace(line, f"metadata: {{name: {new_name}, path: e2e/{new_name}}}")


def build_cases(scratch: Path) -> dict[str, Case]:
    counter = scratch / "counter.txt"
    counter.write_text("")
    text_07 = (EXAMPLES / "07_failure_handler.yaml").read_text()
    text_13 = (EXAMPLES / "13_missing_values.yaml").read_text()
    tag = uuid.uuid4().hex[:8]
    cases = {
        # first, to run at the same time: the worker serves `others` while `slow` holds a process
        "16": Case(EXAMPLES / "16_timeout.yaml", events=True),
        "16_others": Case(make_playbook(f"serving_{tag}", RUN_ALSO_AFTER)),
        "01": Case(EXAMPLES / "01_hello.yaml"),
        "02": Case(EXAMPLES / "02_join.yaml", events=True),
        "03_hot": Case(EXAMPLES / "03_exclusive_routing.yaml"),
        "03_cold": Case(EXAMPLES / "03_exclusive_routing.yaml", {"temperature_c": 10}),
        "04": Case(EXAMPLES / "04_loop_parallel.yaml", events=True),
        "05": Case(EXAMPLES / "05_loop_best_effort.yaml"),
        "06": Case(EXAMPLES / "06_pipeline_retry.yaml", {"counter_file": str(counter)}, events=True),
        "07": Case(EXAMPLES / "07_failure_handler.yaml"),
        "08": Case(EXAMPLES / "08_workbook.yaml"),
        "10": Case(EXAMPLES / "10_short_forms.yaml", {"n": 7}),
        "10_canonical": Case(renamed(SHORT_FORMS_CANONICAL, "examples/short_forms",
                                     f"short_forms_canonical_{tag}"), {"n": 7}),
        "11": Case(EXAMPLES / "11_duckdb_rows.yaml"),
        "12": Case(EXAMPLES / "12_set_ctx.yaml"),
        "13": Case(EXAMPLES / "13_missing_values.yaml", events=True),
        "14": Case(EXAMPLES / "14_cycle_poll.yaml", events=True),
        "15": Case(EXAMPLES / "15_large_result.yaml", events=True),
        "quickstart": Case(EXAMPLES / "quickstart.yaml", events=True),
    }
    if ARC_07 in text_07:
        cases["07_without_arc"] = Case(renamed(text_07.replace(ARC_07, ""), "examples/failure_handler",
                                               f"failure_handler_without_arc_{tag}"))
    if text_13.count(NOTE_13) == 1:
        cases["13_note_text"] = Case(renamed(text_13.replace(NOTE_13, '"{{ ctx.note.text }}"'),
                                             "examples/missing_values", f"missing_values_note_text_{tag}"))
    return cases


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    batch = e2e_stack.batch(build_cases(tmp_path_factory.mktemp("examples")))
    yield batch
    batch.close()


def run_of(runs: Batch, key: str) -> Outcome:
    run = runs[key]
    completed(run)
    return run


def test_01_hello_greets_then_shouts(runs: Batch) -> None:
    example("01_hello.yaml",
            "expect: status completed",
            'expect: steps.greet.result == {"greeting": "Hello, NoETL"}',
            'expect: steps.shout.result == "HELLO, NOETL"')
    run = run_of(runs, "01")
    assert run.step("greet")["result"] == {"greeting": "Hello, NoETL"}
    assert run.step("shout")["result"] == "HELLO, NOETL"
    assert run.doc["result"] == "HELLO, NOETL"


def test_02_join_runs_merge_exactly_once_after_all_three_branches(runs: Batch) -> None:
    example("02_join.yaml",
            "expect: status completed",
            "expect: steps.merge ran exactly once, after all three branches (its attempts == 1)",
            'expect: steps.merge.result == {"total": 6, "branches": ["a", "b", "c"]}')
    run = run_of(runs, "02")
    merge = run.step("merge")
    assert merge["attempts"] == 1
    assert merge["result"] == {"total": 6, "branches": ["a", "b", "c"]}
    [scheduled] = of_type(run.log, "step.scheduled", "merge")
    assert len(of_type(run.log, "step.started", "merge")) == 1
    for branch in ("a", "b", "c"):
        [outcome] = of_type(run.log, "step.succeeded", branch)
        assert outcome["seq"] < scheduled["seq"], f"merge was scheduled before branch {branch} finished"


def test_03_exclusive_routing_takes_hot_by_default_and_cold_with_a_cold_payload(runs: Batch) -> None:
    example("03_exclusive_routing.yaml",
            "expect: status completed",
            "expect: with the default workload: steps.hot ran, steps.cold did not run "
            "(status null/absent)",
            'expect: with payload {"temperature_c": 10}: steps.cold ran, steps.hot did not')
    hot, cold = run_of(runs, "03_hot"), run_of(runs, "03_cold")
    assert hot.step("hot")["status"] == "succeeded"
    assert hot.doc["steps"].get("cold", {}).get("status") is None
    assert hot.step("report")["result"] == "hot"
    assert cold.step("cold")["status"] == "succeeded"
    assert cold.doc["steps"].get("hot", {}).get("status") is None
    assert cold.step("report")["result"] == "cold"


def test_04_parallel_loop_keeps_input_order_and_never_exceeds_max_in_flight(runs: Batch) -> None:
    example("04_loop_parallel.yaml",
            "expect: status completed",
            "expect: steps.square.result == [0, 1, 4, 9, 16, 25, 36, 49] (input order, whatever order "
            "items finished in)",
            "expect: steps.total.result == 140",
            "expect: never more than 3 iterations of square run at once (max_in_flight)")
    run = run_of(runs, "04")
    assert run.step("square")["result"] == [0, 1, 4, 9, 16, 25, 36, 49]
    assert run.step("total")["result"] == 140
    assert len(of_type(run.log, "loop.item.succeeded", "square")) == 8
    assert peak_in_flight_by_order(run.log, "square") == 3  # three at once: parallel, and never more
    assert peak_in_flight_by_time(run.log, "square") <= 3


def test_05_best_effort_loop_records_the_failed_item_and_completes(runs: Batch) -> None:
    example("05_loop_best_effort.yaml",
            "expect: status completed",
            'expect: steps.parse.result == [1, 2, null, 4]; steps.parse.stats == '
            '{"total": 4, "succeeded": 3, "failed": 1}')
    parse = run_of(runs, "05").step("parse")
    assert parse["result"] == [1, 2, None, 4]
    assert parse["stats"] == {"total": 4, "succeeded": 3, "failed": 1}


def test_06_pipeline_retry_shows_two_failed_attempts_then_success(runs: Batch) -> None:
    example("06_pipeline_retry.yaml",
            "expect: status completed",
            'expect: steps.fetch.result == {"ok": true, "attempt": 3}; the events show two failed '
            "attempts, then success")
    run = run_of(runs, "06")
    fetch = run.step("fetch")
    assert fetch["result"] == {"ok": True, "attempt": 3}
    assert fetch["attempts"] == 3
    attempts = [(e["type"], e["attempt"]) for e in run.log if e["step"] == "fetch" and e["type"] in
                ("task.attempt.failed", "step.retrying", "step.succeeded", "step.failed")]
    assert attempts == [("task.attempt.failed", 1), ("step.retrying", 2),
                        ("task.attempt.failed", 2), ("step.retrying", 3), ("step.succeeded", 3)]
    for attempt in of_type(run.log, "task.attempt.failed", "fetch"):
        assert attempt["result"]["error"]["kind"] == "connection"
        assert attempt["result"]["error"]["retryable"] is True


def test_07_a_failure_routed_to_a_handler_completes_and_without_the_arc_fails(runs: Batch) -> None:
    example("07_failure_handler.yaml",
            "expect: status completed (the failure is handled)",
            "expect: steps.divide.status == failed with error.kind == python_exception; "
            "steps.fallback.result == 0",
            "expect: with the arc to fallback removed, the execution fails")
    run = run_of(runs, "07")
    divide = run.step("divide")
    assert divide["status"] == "failed"
    assert divide["error"]["kind"] == "python_exception"
    assert run.step("fallback")["result"] == 0
    assert not run.ran("publish")

    variant = runs["07_without_arc"]  # KeyError: the example no longer has the arc this test removes
    assert (variant.code, variant.status) == (1, "failed"), variant
    assert variant.step("divide")["status"] == "failed"
    assert not variant.ran("publish") and not variant.ran("fallback")
    assert variant.doc["error"]["step"] == "divide"
    assert variant.doc["error"]["kind"] == "python_exception"


def test_08_workbook_task_is_called_twice_with_different_inputs(runs: Batch) -> None:
    example("08_workbook.yaml",
            "expect: status completed",
            'expect: steps.check_a.result == {"is_hot": true} and steps.check_b.result == '
            '{"is_hot": false}')
    run = run_of(runs, "08")
    assert run.step("check_a")["result"] == {"is_hot": True}
    assert run.step("check_b")["result"] == {"is_hot": False}


def test_10_short_forms_validate_equal_their_canonical_spelling_and_run_alike(runs: Batch,
                                                                             noetl: Noetl) -> None:
    path = example("10_short_forms.yaml",
                   'expect: status completed; steps.big.result == "big 7"; steps.small did not run',
                   "expect: `noetl validate` reports no error, and the model equals the canonical spelling "
                   "of the same playbook")
    validated = noetl("validate", str(path))
    assert validated.returncode == 0, validated.stderr
    assert "1 playbook valid" in validated.stderr
    short = load_playbook_text(path.read_text())
    canonical = load_playbook_text(SHORT_FORMS_CANONICAL)
    assert short.playbook is not None and canonical.playbook is not None
    assert short.playbook.model_dump() == canonical.playbook.model_dump()

    run, canonical_run = run_of(runs, "10"), run_of(runs, "10_canonical")
    for r in (run, canonical_run):
        assert r.step("big")["result"] == "big 7"
        assert not r.ran("small")
    assert {k: (v["status"], v["result"]) for k, v in run.doc["steps"].items()} == \
        {k: (v["status"], v["result"]) for k, v in canonical_run.doc["steps"].items()}


def test_11_duckdb_rows_expose_count_columns_and_values(runs: Batch) -> None:
    example("11_duckdb_rows.yaml",
            "expect: status completed",
            'expect: steps.query.result.rows == [{"name": "Alice", "age": 30}, '
            '{"name": "Charlie", "age": 35}]',
            "expect: steps.query.result.statement_count == 3 and "
            "steps.query.result.command_1.row_count == 3",
            'expect: steps.check.result == {"count": 2, "columns": ["name", "age"], '
            '"oldest": "Charlie"}')
    run = run_of(runs, "11")
    query = run.step("query")["result"]
    assert query["rows"] == [{"name": "Alice", "age": 30}, {"name": "Charlie", "age": 35}]
    assert query["statement_count"] == 3 and query["command_1"]["row_count"] == 3
    assert run.step("check")["result"] == {"count": 2, "columns": ["name", "age"], "oldest": "Charlie"}


def test_12_step_set_and_arc_set_reach_the_next_step_through_ctx(runs: Batch) -> None:
    example("12_set_ctx.yaml",
            "expect: status completed",
            'expect: steps.use.result == {"limit": 50, "source": "api", "route": "b"}')
    assert run_of(runs, "12").step("use")["result"] == {"limit": 50, "source": "api", "route": "b"}


def test_13_missing_values_render_empty_with_a_warning_and_fail_when_read_into(runs: Batch) -> None:
    example("13_missing_values.yaml",
            'expect: status completed; steps.describe.result == {"label": "none", "note": "", '
            '"branch": "right"}',
            "expect: the events of step describe carry a warning that ctx.note was not set",
            "expect: changing `ctx.note` to `ctx.note.text` makes describe fail with error.kind "
            "undefined_variable")
    run = run_of(runs, "13")
    assert run.step("describe")["result"] == {"label": "none", "note": "", "branch": "right"}
    warnings = warnings_of(run.log, "describe")
    assert any("ctx.note" in w and "not set" in w for w in warnings), warnings

    variant = runs["13_note_text"]  # KeyError: the example no longer reads ctx.note once
    assert (variant.code, variant.status) == (1, "failed"), variant
    describe = variant.step("describe")
    assert describe["status"] == "failed"
    assert describe["error"]["kind"] == "undefined_variable"
    assert "ctx.note.text" in describe["error"]["message"]
    assert "describe" in describe["error"]["message"]


def test_14_a_step_that_routes_back_to_itself_polls_four_times(runs: Batch) -> None:
    example("14_cycle_poll.yaml",
            'expect: status completed; steps.poll ran 4 times; steps.poll.result == '
            '{"n": 4, "ready": true}')
    run = run_of(runs, "14")
    assert run.step("poll")["result"] == {"n": 4, "ready": True}
    assert len(of_type(run.log, "step.succeeded", "poll")) == 4
    assert [e["run"] for e in of_type(run.log, "step.scheduled", "poll")] == [1, 2, 3, 4]
    assert len(of_type(run.log, "step.succeeded", "done")) == 1


def test_15_a_large_result_travels_by_reference_and_reads_back_whole(runs: Batch) -> None:
    example("15_large_result.yaml",
            "expect: status completed",
            "expect: the events of step make carry a reference (ref) instead of the ~1.6 MB of data",
            'expect: steps.summarize.result == {"rows": 50000, "first": 0, "last": 49999}')
    run = run_of(runs, "15")
    assert run.step("summarize")["result"] == {"rows": 50000, "first": 0, "last": 49999}
    rows = run.step("make")["result"]["rows"]  # the CLI resolves the reference
    assert len(rows) == 50000 and rows[0] == {"id": 0, "label": "row-0"}
    assert 1_200_000 < len(json.dumps(rows, separators=(",", ":"))) < 2_000_000  # ~1.6 MB of data
    log = [e for e in run.log if e["step"] == "make"]
    [outcome] = of_type(log, "step.succeeded")
    assert outcome["result"]["data"] is None
    ref = outcome["result"]["ref"]
    assert ref is not None and ref["uri"] and ref["row_count"] == 50000
    assert all(len(json.dumps(e)) < 64 * 1024 for e in log), "an event of step make carries the data"


def test_16_a_step_past_its_timeout_fails_fast_and_the_worker_keeps_serving(runs: Batch,
                                                                           noetl: Noetl) -> None:
    example("16_timeout.yaml",
            "expect: status failed within ~3 s; steps.slow.error.kind == timeout; the worker keeps "
            "serving other steps")
    run = runs["16"]
    failed(run)
    slow = run.step("slow")
    assert slow["status"] == "failed"
    assert slow["error"]["kind"] == "timeout"
    begun, [ended] = timestamp(run.log[0]), of_type(run.log, "execution.failed")
    assert (timestamp(ended) - begun).total_seconds() < 3.0
    assert run_of(runs, "16_others").step("two")["result"] == 2  # served while `slow` held a process
    code, after = noetl.run_json(make_playbook(f"serving_after_{uuid.uuid4().hex[:8]}", RUN_ALSO_AFTER))
    assert (code, after["status"]) == (0, "completed"), after  # and after its process was killed
    assert after["steps"]["two"]["result"] == 2


QUICKSTART_SCORES = [
    {"id": "A-101", "segment": "retail", "score": 0.022, "band": "low"},
    {"id": "A-102", "segment": "retail", "score": 0.71, "band": "high"},
    {"id": "A-103", "segment": "smb", "score": 0.426, "band": "medium"},
    {"id": "A-104", "segment": "retail", "score": 0.057, "band": "low"},
    {"id": "A-105", "segment": "smb", "score": 0.909, "band": "high"},
    {"id": "A-106", "segment": "smb", "score": 0.022, "band": "low"},
]
QUICKSTART_STATS = {"total": 6, "succeeded": 6, "failed": 0}
QUICKSTART_SEGMENTS = [{"segment": "retail", "applicants": 3, "avg_score": 0.263, "high_risk": 1},
                       {"segment": "smb", "applicants": 3, "avg_score": 0.452, "high_risk": 1}]
QUICKSTART_WATCHLIST = [{"id": "A-105", "score": 0.909}, {"id": "A-102", "score": 0.71}]
QUICKSTART_REPORT = {"cohort": "2026-Q3", "applicants": 6, "high_risk": 2, "riskiest_segment": "smb",
                     "watchlist": ["A-105", "A-102"]}


def test_quickstart_scores_the_cohort_in_parallel_and_joins_both_summaries_into_one_report(
        runs: Batch) -> None:
    example(
        "quickstart.yaml",
        "expect: status completed",
        f"expect: steps.score.result == {json.dumps(QUICKSTART_SCORES)} (input order)",
        f"expect: steps.score.stats == {json.dumps(QUICKSTART_STATS)}; never more than 3 applicants are "
        "scored at once (max_in_flight)",
        f"expect: steps.segments.result.rows == {json.dumps(QUICKSTART_SEGMENTS)}",
        f"expect: steps.watchlist.result == {json.dumps(QUICKSTART_WATCHLIST)}",
        "expect: steps.report ran exactly once, after both segments and watchlist finished",
        f"expect: steps.report.result == {json.dumps(QUICKSTART_REPORT)}")
    run = run_of(runs, "quickstart")
    score = run.step("score")
    assert score["result"] == QUICKSTART_SCORES
    assert score["stats"] == QUICKSTART_STATS
    assert run.step("segments")["result"]["rows"] == QUICKSTART_SEGMENTS
    assert run.step("watchlist")["result"] == QUICKSTART_WATCHLIST
    assert run.step("report")["result"] == QUICKSTART_REPORT
    assert run.doc["result"] == QUICKSTART_REPORT
    assert peak_in_flight_by_order(run.log, "score") == 3
    assert peak_in_flight_by_time(run.log, "score") <= 3
    [report] = of_type(run.log, "step.scheduled", "report")
    assert len(of_type(run.log, "step.started", "report")) == 1
    for branch in ("segments", "watchlist"):
        [outcome] = of_type(run.log, "step.succeeded", branch)
        assert outcome["seq"] < report["seq"]
