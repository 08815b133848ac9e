"""What the console's pools page (and its live stream) shows of a pool: every figure as text."""

from __future__ import annotations

from control_plane.console.pools import amounts, pool_row
from control_plane.services.pools import PoolView, WorkerView


def test_a_declared_pool_shows_its_declared_capacity_its_live_workers_and_its_queue() -> None:
    worker = WorkerView("w-1", "gpu", ["a100", "gpu"], {"cpu": 8.0, "gpu": 1.0}, 4, 2.345)
    view = PoolView("gpu", True, ["gpu"], {"cpu": 16.0, "gpu": 2.0}, {"cpu": 8.0, "gpu": 1.0}, [worker], 3)
    assert pool_row(view) == {
        "name": "gpu", "declared": True, "capacity": "cpu 16, gpu 2", "labels": "gpu",
        "live_capacity": "cpu 8, gpu 1", "queued": "3",
        "workers": [{"worker": "w-1", "capacity": "cpu 8, gpu 1", "concurrency": "4", "labels": "a100, gpu",
                     "heard": "2.3 s ago"}]}


def test_an_undeclared_pool_says_its_capacity_is_its_workers_and_an_unknown_queue_says_so() -> None:
    row = pool_row(PoolView("adhoc", False, [], {"cpu": 0.5}, {"cpu": 0.5}, [], None))
    assert row["capacity"] == "cpu 0.5 (not declared: its live workers')"
    assert row["queued"] == "unknown (the bus did not say)" and row["labels"] == "-" and row["workers"] == []
    assert amounts({}) == "-"
