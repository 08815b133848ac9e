"""`noetl bench eventlog`: append latency against the log's size, as ratios to the empty log's."""

from __future__ import annotations

import pytest

from evals.benchmarks.event_log_growth import measure

pytestmark = pytest.mark.anyio



async def test_the_event_log_benchmark_reports_append_latency_and_ratios_for_each_log_size() -> None:
    result = await measure(sizes=(0, 3000), samples=20)
    assert set(result["append_ms_by_log_size"]) == {"0", "3000"}
    assert all(ms > 0 for ms in result["append_ms_by_log_size"].values())
    assert result["ratio_to_empty_log"]["0"] == 1.0
    assert result["worst_ratio"] == max(result["ratio_to_empty_log"].values())
    assert result["met"] == (result["worst_ratio"] <= result["target"]["worst_ratio_max"])
