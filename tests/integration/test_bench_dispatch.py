"""`noetl bench dispatch --json` on tiny sizes: every figure is there and positive (no timing assertions)."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from noetl.commands import bench

KEYS = ("floor_rtt_ms", "step_overhead_ms", "step_overhead_ratio", "floor_throughput_per_s",
        "loop_throughput_per_s", "loop_throughput_ratio")


def test_bench_dispatch_reports_positive_floor_and_engine_figures_with_targets_and_machine() -> None:
    app = typer.Typer()
    bench.register(app)
    result = CliRunner().invoke(
        app, ["bench", "dispatch", "--steps", "20", "--items", "100", "--round-trips", "200",
              "--repetitions", "1", "--json"],
        env={"NOETL_NATS_URL": "", "NOETL_PG_DSN": ""})  # embedded servers in a temporary home
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in KEYS:
        assert report[key] > 0, key
    assert report["targets"] == {"step_overhead_ratio_max": 1.5, "loop_throughput_ratio_min": 0.6}
    assert set(report["met"]) == {"step_overhead", "loop_throughput"}
    assert all(isinstance(value, bool) for value in report["met"].values())
    assert report["cpus"] >= 1 and len(report["loadavg_before"]) == 3
    assert report["sizes"]["chain_steps"] == 20 and report["sizes"]["loop_items"] == 100
    assert report["servers"] == {"nats": "embedded", "postgres": "embedded"}
    [pair] = report["pairs"]  # one repetition: floor and engine measured in turns, once each
    assert pair["step_overhead_ratio"] == report["step_overhead_ratio"]
    assert pair["loop_throughput_ratio"] == report["loop_throughput_ratio"]
    assert report["sizes"]["worker_concurrency"] == report["sizes"]["floor_consumer_batch"]
