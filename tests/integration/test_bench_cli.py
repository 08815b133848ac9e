"""`noetl bench cli`: `noetl --help` and `noetl run` against `python -c pass`, as ratios, in one run."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_the_cli_benchmark_reports_medians_and_positive_ratios_for_help_and_run_on_its_own_stack() -> None:
    done = subprocess.run([sys.executable, "-m", "noetl.cli", "bench", "cli", "--runs", "2", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["runs"] == 2
    for name in ("python_pass", "help", "help_uncached", "run"):
        assert len(result[name]["samples_ms"]) == 2
        assert result[name]["median_ms"] > 0
    assert set(result["ratios"]) == {"help", "help_uncached", "run"}
    assert all(isinstance(r, float) and r > 0 for r in result["ratios"].values())
    assert result["goals"] == {"help": 3.0, "run": 4.0}
    assert result["met"] == {name: result["ratios"][name] <= goal for name, goal in result["goals"].items()}
