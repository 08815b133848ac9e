"""Prometheus metrics read from the event log and the bus at scrape time (no in-process counters to lose)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from control_plane.store import Store
from engine.bus.jetstream import Bus, BusError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_OUTCOMES = ("step.succeeded", "step.failed", "step.skipped", "loop.item.succeeded", "loop.item.failed")
_FAILURES = ("step.failed", "loop.item.failed", "task.attempt.failed")

_EXECUTIONS_SQL = "SELECT status, count(*) AS n FROM executions GROUP BY status"
_STEPS_SQL = "SELECT type, count(*) AS n FROM events WHERE type = ANY(%s) GROUP BY type"
_ERRORS_SQL = ("SELECT coalesce(body->'result'->'error'->>'kind', 'unknown') AS kind, count(*) AS n "
               "FROM events WHERE type = ANY(%s) GROUP BY 1")
_DURATIONS_SQL = ("SELECT " + ", ".join(f"count(*) FILTER (WHERE d <= {b})" + f" AS b{i}"
                                        for i, b in enumerate(DURATION_BUCKETS_S))
                  + ", count(*) AS n, coalesce(sum(d), 0) AS total FROM ("
                  "SELECT (body->>'duration_ms')::float8 / 1000.0 AS d FROM events "
                  "WHERE type IN ('step.succeeded', 'step.failed', 'loop.item.succeeded', "
                  "'loop.item.failed') "
                  "AND body ? 'duration_ms' AND body->>'duration_ms' IS NOT NULL) s")


@dataclass
class Snapshot:
    executions: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=list)
    durations: tuple[int, float] = (0, 0.0)
    queues: dict[str, int] = field(default_factory=dict)


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        s = self.snapshot
        executions = GaugeMetricFamily("noetl_executions", "Executions stored, by status", labels=["status"])
        for status, n in sorted(s.executions.items()):
            executions.add_metric([status], n)
        yield executions
        steps = CounterMetricFamily("noetl_step_outcomes", "Step and loop item outcomes recorded",
                                    labels=["outcome"])
        for type_, n in sorted(s.steps.items()):
            steps.add_metric([type_], n)
        yield steps
        errors = CounterMetricFamily("noetl_step_errors",
                                     "Failed steps, loop items and attempts, by error kind", labels=["kind"])
        for kind, n in sorted(s.errors.items()):
            errors.add_metric([kind], n)
        yield errors
        count, total = s.durations
        buckets = [(str(b), n) for b, n in zip(DURATION_BUCKETS_S, s.buckets, strict=False)]
        buckets.append(("+Inf", count))
        yield HistogramMetricFamily("noetl_step_duration_seconds", "Run time of steps and loop items",
                                    buckets=buckets, sum_value=total)
        queues = GaugeMetricFamily("noetl_queue_depth", "Commands waiting for a worker, by pool",
                                   labels=["pool"])
        for pool, n in sorted(s.queues.items()):
            queues.add_metric([pool], n)
        yield queues


class MetricsService:
    def __init__(self, store: Store, bus: Bus | None) -> None:
        self.store = store
        self.bus = bus

    async def snapshot(self) -> Snapshot:
        db = self.store.db
        snap = Snapshot()
        snap.executions = {r["status"]: int(r["n"]) for r in await db.fetch_all(_EXECUTIONS_SQL)}
        snap.steps = {r["type"]: int(r["n"]) for r in await db.fetch_all(_STEPS_SQL, (list(_OUTCOMES),))}
        snap.errors = {r["kind"]: int(r["n"]) for r in await db.fetch_all(_ERRORS_SQL, (list(_FAILURES),))}
        row = await db.fetch_one(_DURATIONS_SQL)
        if row is not None:
            snap.buckets = [int(row[f"b{i}"]) for i in range(len(DURATION_BUCKETS_S))]
            snap.durations = (int(row["n"]), float(row["total"]))
        if self.bus is not None:
            try:
                snap.queues = await self.bus.command_queue_depths()
            except BusError as exc:  # metrics still answer; the missing gauge shows the problem
                log.warning("queue depth unavailable: %s", exc)
        return snap

    async def render(self) -> bytes:
        """The Prometheus text exposition of the current snapshot."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_SnapshotCollector(await self.snapshot()))
        return generate_latest(registry)
