"""`noetl bench python --json` on tiny sizes: every figure is there and positive (no timing assertions)."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from noetl.commands import bench


def test_bench_python_reports_per_call_percentiles_and_the_loop_ratio_to_noop() -> None:
    app = typer.Typer()
    bench.register(app)
    result = CliRunner().invoke(
        app, ["bench", "python", "--calls", "50", "--items", "100", "--repetitions", "1", "--json"],
        env={"NOETL_NATS_URL": "", "NOETL_PG_DSN": ""})  # embedded servers in a temporary home
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("per_call_p50_ms", "per_call_p95_ms", "python_loop_items_per_s", "noop_loop_items_per_s",
                "loop_ratio"):
        assert report[key] > 0, key
    assert report["per_call_p95_ms"] >= report["per_call_p50_ms"]
    assert report["per_call"]["calls"] == 50
    assert report["per_call"]["pool_round_trip"]["p50_ms"] > 0
    assert report["targets"] == {"per_call_p50_ms_max": 1.0, "loop_ratio_min": 0.5}
    assert set(report["met"]) == {"per_call", "loop_ratio"}
    assert all(isinstance(value, bool) for value in report["met"].values())
    [pair] = report["pairs"]  # one repetition: the noop loop and the python loop once each
    assert pair["ratio"] == report["loop_ratio"]
    assert report["sizes"]["items"] == 100 and report["sizes"]["worker_concurrency"] == 4
    assert report["servers"] == {"nats": "embedded", "postgres": "embedded"}
    assert report["cpus"] >= 1 and len(report["loadavg_before"]) == 3
