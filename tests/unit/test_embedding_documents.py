"""Events -> documents (agents/embeddings/documents.py): pure, no model, no index."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.embeddings.documents import (
    KINDS,
    documents_of,
    execution_document,
    failure_documents,
    normalize_message,
    playbook_document,
    shape,
)
from engine.protocol.events import Event
from engine.protocol.results import ResultEnvelope

PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: fetch_orders, path: tests/fetch_orders, description: Fetch the orders}
workload: {api: "https://example.test"}
workflow:
  - step: fetch
    input: {region: "{{ workload.region }}"}
    tool:
      kind: http
      method: POST
      url: "{{ workload.api }}/orders"
      headers: {Authorization: "Bearer {{ keychain.token }}"}
    next: store
  - step: store
    loop: {in: "{{ fetch.data }}", iterator: row}
    tool: {kind: python, code: "result = row"}
"""


@dataclass
class Source:
    events: list[Event]
    execution_id: str = "exec-1"
    playbook_path: str = "tests/fetch_orders"
    playbook_version: int = 3
    status: str = "failed"
    playbook_text: str = PLAYBOOK
    ended_at: datetime | None = None
    parent_execution_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def event(type_: str, step: str | None = None, n: int = 0, **fields: Any) -> Event:
    key = uuid.uuid4().hex
    return Event(event_id=key, idempotency_key=key, execution_id="exec-1", type=type_, step=step,
                 timestamp=T0 + timedelta(seconds=n), **fields)


def failed(kind: str, message: str, **meta: Any) -> ResultEnvelope:
    return ResultEnvelope.fail(kind, message, **meta)


def started() -> Event:
    return event("execution.started", payload={"playbook": PLAYBOOK, "path": "tests/fetch_orders",
                                               "version": 3, "payload": {"region": "eu", "token": "s3cr3t",
                                                                         "limit": 5}})


def test_a_failed_step_gives_one_failure_document_with_shapes_never_values() -> None:
    source = Source([
        started(),
        event("step.scheduled", "fetch", 1, command_id="c1", run=1),
        event("step.failed", "fetch", 2, command_id="c1", run=1, attempt=1,
              result=failed("server_error", "HTTP 503 from https://example.test/orders", code="HTTP_503",
                            http_status=503)),
        event("execution.failed", None, 3,
              payload={"error": {"kind": "server_error", "message": "HTTP 503"}}),
    ])
    [doc] = failure_documents(source)
    assert doc.kind == "failure"
    p = doc.payload
    assert p["step"] == "fetch" and p["tool_kind"] == "http" and p["error_kind"] == "server_error"
    assert p["error_code"] == "HTTP_503" and p["execution_id"] == "exec-1" and p["playbook_version"] == 3
    assert p["input_shape"] == {
        "step": {"region": "template"},
        "tool": {"headers": {"Authorization": "template"}, "method": "str", "url": "template"},
        "payload": {"limit": "int", "region": "str", "token": "str"},
    }
    assert p["retried"] is False and p["step_succeeded"] is False and p["attempts"] == 1
    assert p["occurred_at"] == (T0 + timedelta(seconds=2)).isoformat()
    assert "s3cr3t" not in repr(doc) and "eu" not in doc.text.split()  # payload values never get in
    assert "http step 'fetch' failed: server_error code HTTP_503" in doc.text
    assert "tests/fetch_orders" in doc.text


def test_ids_are_deterministic_and_differ_by_kind() -> None:
    events = [started(), event("step.failed", "fetch", 1, command_id="c1", result=failed("timeout", "slow"))]
    first = documents_of(Source(events))
    again = documents_of(Source(events))
    assert [d.id for d in first] == [d.id for d in again]
    assert {d.kind for d in first} == set(KINDS)
    assert len({d.id for d in first}) == 3
    assert playbook_document("p", 1, "").id == playbook_document("p", 1, "other text").id
    assert playbook_document("p", 1, "").id != playbook_document("p", 2, "").id


def test_a_retried_attempt_is_a_failure_marked_retried_and_whether_the_step_then_succeeded() -> None:
    source = Source([
        started(),
        event("task.attempt.failed", "fetch", 1, command_id="c1", attempt=1, payload={"task": "fetch"},
              result=failed("connection", "connection refused")),
        event("step.retrying", "fetch", 2, command_id="c1", attempt=2, payload={"task": "fetch"}),
        event("task.attempt.failed", "fetch", 3, command_id="c1", attempt=2, payload={"task": "fetch"},
              result=failed("connection", "connection refused")),
        event("step.retrying", "fetch", 4, command_id="c1", attempt=3, payload={"task": "fetch"}),
        event("step.succeeded", "fetch", 5, command_id="c1", attempt=3, result=ResultEnvelope.ok({"n": 1})),
    ], status="completed")
    docs = failure_documents(source)
    assert [d.payload["attempts"] for d in docs] == [1, 2]
    assert all(d.payload["retried"] and d.payload["step_succeeded"] for d in docs)
    assert all(d.payload["event_type"] == "task.attempt.failed" for d in docs)
    assert docs[0].text.startswith("a retried attempt of http step 'fetch'")


def test_an_attempt_not_retried_is_left_to_the_step_outcome_and_cancellations_are_no_failures() -> None:
    source = Source([
        started(),
        event("task.attempt.failed", "fetch", 1, command_id="c1", attempt=1, payload={"task": "fetch"},
              result=failed("python_exception", "boom")),
        event("step.failed", "fetch", 2, command_id="c1", attempt=1,
              result=failed("python_exception", "boom")),
        event("step.failed", "store", 3, command_id="c2", result=failed("cancelled", "cancelled on request")),
    ])
    [doc] = failure_documents(source)
    assert doc.payload["event_type"] == "step.failed" and doc.payload["step"] == "fetch"


def test_identical_loop_item_failures_collapse_into_one_document_with_a_count() -> None:
    items = [event("loop.item.failed", "store", i, command_id=f"c{i}", run=1, loop_index=i,
                   result=failed("python_exception", f"KeyError: 'id' in row {uuid.uuid4().hex}"))
             for i in range(1, 4)]
    other = event("loop.item.failed", "store", 5, command_id="c5", run=1, loop_index=5,
                  result=failed("python_exception", "ZeroDivisionError: division by zero"))
    docs = failure_documents(Source([started(), *items, other]))
    assert [d.payload.get("count", 1) for d in docs] == [3, 1]  # the rows' ids do not tell them apart
    assert docs[0].payload["tool_kind"] == "python" and docs[0].payload["loop_index"] == 1


def test_the_execution_document_lists_steps_and_error() -> None:
    source = Source([
        started(),
        event("step.failed", "fetch", 2, command_id="c1", result=failed("timeout", "no answer within 5 s")),
        event("execution.failed", None, 3, payload={"error": {"kind": "timeout", "message": "no answer"}}),
    ])
    doc = execution_document(source)
    assert doc.kind == "execution"
    assert doc.payload["status"] == "failed" and doc.payload["failed_steps"] == ["fetch"]
    assert doc.payload["error_kind"] == "timeout" and doc.payload["duration_ms"] == 3000.0
    assert "fetch failed (timeout: no answer within 5 s)" in doc.text


def test_the_playbook_document_names_steps_and_tool_kinds_and_survives_a_bad_text() -> None:
    doc = playbook_document("tests/fetch_orders", 3, PLAYBOOK)
    assert doc.payload["steps"] == ["fetch", "store"] and doc.payload["tool_kinds"] == ["http", "python"]
    assert "fetch (http)" in doc.text and "store (python, loop)" in doc.text
    assert "Fetch the orders" in doc.text
    broken = playbook_document("x", 1, "workflow: [")
    assert "does not parse" in broken.text


def test_shape_and_message_normalization() -> None:
    assert shape({"a": [1, 2], "b": {"c": None, "d": True}, "e": "{{ x }}", "f": 1.5}) == {
        "a": ["int"], "b": {"c": "null", "d": "bool"}, "e": "template", "f": "float"}
    assert normalize_message("run 6f0e4a52-3c1d-5b7e-9a4f-6e6f65746c00\n  failed") == "run <id> failed"
    assert len(normalize_message("x" * 1000)) == 300
