"""The exported rows, built from events without I/O: step runs per command and attempt, error signatures,
batch ids, masked URLs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.analytics.exporter import batch_id, masked
from agents.analytics.rows import batch_rows, ended_in, signature

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Ev:
    seq: int
    type: str
    body: dict[str, Any]
    step: str | None = None
    loop_index: int | None = None
    execution_id: str = "x1"
    event_id: str = ""
    derived: bool = False
    playbook_path: str = "tests/p"
    playbook_version: int = 2

    @property
    def occurred_at(self) -> datetime:
        return T0 + timedelta(seconds=self.seq)

    @property
    def recorded_at(self) -> datetime:
        return self.occurred_at


@dataclass
class Ex:
    events: list[Any]
    execution_id: str = "x1"
    playbook_path: str = "tests/p"
    playbook_version: int = 2
    status: str = "completed"
    parent_execution_id: str | None = None
    parent_step: str | None = None
    created_at: datetime = T0
    ended_at: datetime | None = T0 + timedelta(seconds=9)
    last_seq: int = 9
    extra: dict[str, Any] = field(default_factory=dict)


def error(kind: str, message: str) -> dict[str, Any]:
    return {"result": {"status": "error", "error": {"kind": kind, "message": message}}}


def test_a_retried_command_gives_one_row_per_attempt_with_queue_and_run_times() -> None:
    c = {"command_id": "c1", "pool": "default"}
    events = [Ev(1, "execution.started", {}),
              Ev(2, "step.scheduled", c, "fetch"),
              Ev(3, "step.started", {**c, "attempt": 1, "worker": "w1"}, "fetch"),
              Ev(4, "task.attempt.failed", {**c, "attempt": 1, **error("connection", "port 5432 refused")},
                 "fetch"),
              Ev(5, "step.retrying", {**c, "attempt": 2}, "fetch"),
              Ev(7, "step.succeeded", {**c, "attempt": 1, "worker": "w1"}, "fetch"),
              Ev(9, "execution.completed", {})]
    rows = batch_rows(events, [Ex(events)])
    runs = rows.tables["step_runs"]
    assert [(r["attempt"], r["status"], r["error_kind"]) for r in runs] == [
        (1, "failed", "connection"), (2, "succeeded", "")]
    assert runs[0]["queue_ms"] == 1000 and runs[0]["run_ms"] == 1000 and runs[0]["worker"] == "w1"
    assert runs[1]["queued_at"] == T0 + timedelta(seconds=4) and runs[1]["run_ms"] == 2000
    assert runs[0]["error_signature"] == "connection: port <n> refused"
    [execution] = rows.tables["executions"]
    assert execution["step_runs"] == 2 and execution["duration_ms"] == 8000 and execution["events"] == 7
    assert len(rows.tables["events"]) == 7 and ended_in(events) == ["x1"]


def test_signatures_group_the_same_failure_with_other_values() -> None:
    a = signature("python_exception", "KeyError: 'order_1234'\nTraceback ...")
    b = signature("python_exception", "KeyError: 'order_98'")
    assert a == b == "python_exception: KeyError: <v>"
    assert signature("", "") == ""
    assert signature("http", "HTTP 503 from deadbeefcafe1234") == "http: HTTP <n> from <id>"


def test_batch_ids_are_deterministic_and_urls_are_masked() -> None:
    assert batch_id((0, "", 0), (5, "x", 3)) == batch_id((0, "", 0), (5, "x", 3))
    assert batch_id((0, "", 0), (5, "x", 3)) != batch_id((0, "", 0), (5, "x", 4))
    assert masked("http://noetl:s3cret@ch:8123/db") == "http://noetl:***@ch:8123/db"
    assert masked("chdb://") == "chdb://"
