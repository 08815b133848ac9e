"""The insights' pure part (agents/insights/): step figures and trends, bottlenecks, anomalies, failure
clusters, and the window, over event rows shaped as control_plane/store/insights.py returns them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.insights.anomalies import anomalies
from agents.insights.clusters import SIMILAR_EMBEDDED, clusters, embedding_similarity, signature
from agents.insights.durations import bottlenecks, critical_path, step_figures
from agents.insights.errors import InsightsError
from agents.insights.history import fold
from agents.insights.window import since_time

T0 = datetime(2026, 12, 1, tzinfo=UTC)
Step = tuple[str, float, float, str | None, str | None]  # step, queue ms, run ms, error kind, message


def chain(execution_id: str, start: datetime, steps: list[Step], *, version: int = 1,
          path: str = "p/chain", overlays: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The rows of an execution running `steps` one after another."""
    rows: list[dict[str, Any]] = []

    def row(kind: str, at: datetime, **more: Any) -> None:
        rows.append({"execution_id": execution_id, "path": path, "version": version, "type": kind, "at": at,
                     "step": None, "command_id": None, **more})

    row("execution.started", start)
    if overlays:
        row("policy.applied", start, detail=overlays)
    at, failed = start, None
    for index, (step, queue_ms, run_ms, kind, message) in enumerate(steps):
        command = f"{execution_id}-{index}"
        row("step.scheduled", at, step=step, command_id=command)
        at += timedelta(milliseconds=queue_ms)
        row("step.started", at, step=step, command_id=command, worker="w1")
        at += timedelta(milliseconds=run_ms)
        outcome = "step.failed" if kind else "step.succeeded"
        row(outcome, at, step=step, command_id=command, duration_ms=run_ms, attempt=1, error_kind=kind,
            error_message=message)
        if kind:
            failed = kind
            break
    row("execution.failed" if failed else "execution.completed", at,
        detail={"kind": failed} if failed else None)
    return rows


def history(count: int, steps: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """`count` executions an hour apart; `steps(i)` gives the i-th one's steps."""
    return [r for i in range(count) for r in chain(f"e{i:03d}", T0 + timedelta(hours=i), steps(i), **kwargs)]


def test_a_step_run_has_its_queue_time_and_run_time_from_its_events() -> None:
    [execution] = fold(chain("e1", T0, [("a", 30, 200, None, None)]))
    [run] = execution.runs
    assert (run.queue_ms, run.run_ms, run.status, run.worker) == (30.0, 200, "succeeded", "w1")
    assert execution.status == "completed" and execution.duration_ms == 230.0


def test_a_step_that_got_slower_shows_its_trend_and_one_that_did_not_does_not() -> None:
    rows = history(10, lambda i: [("load", 5, 100 if i < 5 else 300, None, None),
                                  ("tidy", 5, 40, None, None)])
    figures = {f.step: f for f in step_figures(fold(rows))}
    assert figures["load"].slower and figures["load"].trend == pytest.approx(3.0)
    assert not figures["tidy"].slower and figures["tidy"].p50_ms == 40
    assert figures["load"].queue_p50_ms == 5 and figures["load"].failure_rate == 0


def test_a_slowdown_a_third_of_the_way_in_is_found_with_when_it_began_despite_a_lone_spike_before() -> None:
    durations = [100, 96, 104, 900, 101, 99, 98, 103] + [250, 240, 262, 255, 248, 251, 259, 244, 247, 252,
                                                          246, 249, 253, 241, 250, 258]
    rows = history(len(durations), lambda i: [("load", 5, durations[i], None, None)])
    [load] = step_figures(fold(rows))
    assert load.slower and load.trend == pytest.approx(2.5, rel=0.05)
    assert load.slower_since == T0 + timedelta(hours=8)


def test_the_step_that_dominates_the_critical_path_is_the_first_bottleneck() -> None:
    executions = fold(history(3, lambda i: [("a", 1, 10, None, None), ("b", 1, 500, None, None),
                                            ("c", 1, 10, None, None)]))
    assert [r.step for r in critical_path(executions[0])] == ["a", "b", "c"]
    first = bottlenecks(executions)[0]
    assert (first.step, first.executions) == ("b", 3) and first.share > 0.9
    assert "mostly running" in first.reason


def test_a_run_far_out_of_its_history_is_an_anomaly_with_the_reason_and_ordinary_spread_is_not() -> None:
    usual = [100, 104, 98, 120, 101, 99, 130, 102, 97, 115, 103, 100]
    rows = history(13, lambda i: [("load", 2, usual[i] if i < 12 else 900, None, None)])
    found = anomalies(fold(rows))
    steps = [a for a in found if a.scope == "step"]
    assert [(a.execution_id, a.step, a.kind) for a in steps] == [("e012", "load", "duration")]
    assert "took 0.9 s" in steps[0].reason and "median" in steps[0].reason
    assert not anomalies(fold(history(12, lambda i: [("load", 2, usual[i], None, None)])))


def test_a_failure_where_the_step_nearly_always_succeeds_is_an_outcome_anomaly() -> None:
    rows = history(11, lambda i: [("call", 1, 50, "timeout" if i == 10 else None, "timed out")])
    [found] = [a for a in anomalies(fold(rows)) if a.kind == "outcome"]
    assert found.execution_id == "e010" and "10 of its last 10 runs succeeded" in found.reason


def test_failures_differing_only_in_numbers_and_ids_are_one_cluster_apart_from_another_kind() -> None:
    assert signature("connection", "refused by db-7 at 10.0.0.12:5432 (id 3f2a9c0b1d4e5f60a1)") == \
        signature("connection", "refused by db-9 at 10.0.0.13:5432 (id 99aa00bb11cc22dd33)")
    unwrapped = "python_exception: column order_<n>_total"
    assert signature("python_exception", "'column order_12_total'") == unwrapped
    rows = history(6, lambda i: [("call", 1, 5, "connection" if i % 2 else "timeout",
                                  f"refused by db-{i} after {i} s" if i % 2 else "timed out")])
    found = {c.kind: c for c in clusters(fold(rows))}
    assert found["connection"].count == 3 and found["timeout"].count == 3
    assert found["connection"].first_seen == T0 + timedelta(hours=1, milliseconds=6)


def test_signatures_worded_differently_join_one_cluster_when_their_embeddings_are_alike() -> None:
    meanings = {"refused": [1.0, 0.1, 0.0], "database": [0.95, 0.2, 0.05], "disk": [0.0, 0.1, 1.0]}
    embedded: list[str] = []

    def embed(texts: Any) -> list[list[float]]:  # a stand-in model: the vector of the first word it knows
        embedded.extend(texts)
        return [next(v for word, v in meanings.items() if word in text.split(": ", 1)[1]) for text in texts]

    messages = ["connection refused by db-1", "could not connect to the database", "disk full on /data/x"]
    rows = history(6, lambda i: [("call", 1, 5, "connection", messages[i % 3])])
    found = clusters(fold(rows), similarity=embedding_similarity(embed), threshold=SIMILAR_EMBEDDED)
    assert sorted(c.count for c in found) == [2, 4]  # the two connection messages are one problem
    assert len(embedded) == len(set(embedded)) == 3  # each signature embedded once
    assert len(clusters(fold(rows))) == 3  # by their words they are three


def test_a_cluster_that_came_with_a_new_playbook_version_names_that_version() -> None:
    rows = history(4, lambda i: [("call", 1, 5, None, None)], version=1)
    rows += [r for i in range(4, 8) for r in chain(f"e{i:03d}", T0 + timedelta(hours=i),
                                                  [("call", 1, 5, "validation", "field x is missing")],
                                                  version=2)]
    [cluster] = clusters(fold(rows))
    assert cluster.introduced_in == "v2" and cluster.releases == {"v2"} and cluster.count == 4


def test_a_cluster_that_came_with_an_applied_policy_change_names_it() -> None:
    rows = history(3, lambda i: [("call", 1, 5, None, None)])
    rows += chain("e100", T0 + timedelta(days=1), [("call", 1, 5, "timeout", "timed out after 1 s")],
                  overlays={"call": 2})
    [cluster] = clusters(fold(rows))
    assert cluster.introduced_in == "v1+call@2"


def test_a_failure_present_from_the_start_of_the_window_names_no_release() -> None:
    rows = history(3, lambda i: [("call", 1, 5, "timeout", "timed out")])
    assert clusters(fold(rows))[0].introduced_in is None


def test_the_window_is_a_span_back_from_now_or_a_time_and_anything_else_is_refused() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert since_time("7d", now) == now - timedelta(days=7)
    assert since_time("90m", now) == now - timedelta(minutes=90)
    assert since_time(None, now) == now - timedelta(days=7)
    assert since_time("2026-12-01T00:00:00", now) == datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(InsightsError, match="neither a span nor a time"):
        since_time("last week", now)
