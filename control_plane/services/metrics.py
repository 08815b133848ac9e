"""Prometheus metrics read from the event log and the bus at scrape time (no in-process counters to lose)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from control_plane.store import Store
from control_plane.store.metrics import DURATION_BUCKETS_S
from engine.bus.jetstream import Bus, BusError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_OUTCOMES = ("step.succeeded", "step.failed", "step.skipped", "loop.item.succeeded", "loop.item.failed")
_FAILURES = ("step.failed", "loop.item.failed", "task.attempt.failed")


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
        metrics = self.store.metrics
        snap = Snapshot()
        snap.executions = await metrics.executions_by_status()
        snap.steps = await metrics.count_by_type(_OUTCOMES)
        snap.errors = await metrics.error_kinds(_FAILURES)
        durations = await metrics.step_durations()
        if durations is not None:
            snap.buckets, count, total = durations
            snap.durations = (count, total)
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
