"""The chat suite through the command line: over 40 questions on a seeded history, the execution each
points at resolved and the root cause named, reported as JSON with the targets met."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from evals.suites.chat.runner import CASES, HISTORY, TARGETS
from tests.conftest import REPO


def test_the_cases_ask_over_forty_questions_about_runs_the_history_has() -> None:
    labels = {run["label"] for run in yaml.safe_load(HISTORY.read_text())["runs"]}
    questions = [q for c in yaml.safe_load(CASES.read_text())["conversations"] for q in c["questions"]]
    assert len(questions) >= 40
    for question in questions:
        assert question.get("execution") in labels | {None}, question
        assert set(question.get("listed") or []) <= labels, question
    assert sum(1 for q in questions if q.get("root_cause")) >= 30


def test_noetl_eval_chat_json_reports_its_scores_and_meets_the_targets() -> None:
    result = subprocess.run([sys.executable, "-m", "noetl.cli", "eval", "chat", "--json"],
                            capture_output=True, text=True, cwd=REPO, timeout=600, stdin=subprocess.DEVNULL)
    report = json.loads(result.stdout)
    assert report["questions"] >= 40 and report["targets"] == TARGETS
    assert report["scores"]["execution_resolved"] >= 0.9, report["misses"]
    assert report["scores"]["root_cause_named"] >= 0.9, report["misses"]
    assert report["targets_met"] and result.returncode == 0, result.stderr[-2000:]
    assert report["latency_ms"]["p50"] is not None and len(report["results"]) == report["questions"]
