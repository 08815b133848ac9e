"""The insights suite through the command line: a seeded history with planted slowdowns, anomalies and
failure clusters, written to a real Postgres event log, found with precision and recall reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_noetl_eval_insights_json_finds_what_was_planted_with_precision_and_recall(pg_dsn: str) -> None:
    env = {**os.environ, "NOETL_PG_DSN": pg_dsn}
    result = subprocess.run([sys.executable, "-m", "noetl.cli", "eval", "insights", "--json"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
                            stdin=subprocess.DEVNULL)
    report = json.loads(result.stdout)
    assert report["executions"] == 240
    for finding in ("slowdowns", "duration_anomalies", "outcome_anomalies", "clusters"):
        part = report[finding]
        assert part["planted"] > 0 and 0 <= part["precision"] <= 1 and 0 <= part["recall"] <= 1, finding
        assert part["precision"] >= 0.9 and part["recall"] >= 0.9, (finding, part)
    assert report["clusters"]["planted"] >= 5  # from the start, a new version, a policy change, ...
    assert report["introduced_in"]["planted"] == 2 and report["introduced_in"]["recall"] == 1.0
    assert result.returncode == 0 and report["passed"], result.stderr[-2000:]
