"""Tracing's pure parts: traceparent encoding, ids derived from the execution's, the spans the
orchestrator builds from events, the OTLP encoding and the OTEL_* settings."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from engine.protocol.commands import RunStep, decode_runs
from engine.protocol.events import Event
from engine.protocol.results import ResultEnvelope
from engine.protocol.tracecontext import (
    command_span_id,
    command_traceparent,
    execution_span_id,
    format_traceparent,
    loop_span_id,
    parse_traceparent,
    trace_id_for,
    wait_span_id,
)
from engine.runtime import traces
from engine.runtime.spans import SpanRecord, otlp_endpoint
from engine.runtime.traces import TraceRecorder
from engine.runtime.tracing import encode_spans, exporter_from_env


def test_ids_are_derived_from_the_execution_and_well_formed() -> None:
    assert trace_id_for("e1") == trace_id_for("e1") != trace_id_for("e2")
    assert len(trace_id_for("e1")) == 32 and int(trace_id_for("e1"), 16)
    ids = {execution_span_id("e1"), command_span_id("e1", "c1"), command_span_id("e1", "c2"),
           loop_span_id("e1", "s", 1), loop_span_id("e1", "s", 2), wait_span_id("e1", "c1")}
    assert len(ids) == 6 and all(len(i) == 16 and int(i, 16) for i in ids)


def test_traceparent_round_trip_and_invalid_values() -> None:
    value = format_traceparent("a" * 32, "b" * 16)
    assert value == f"00-{'a' * 32}-{'b' * 16}-01"
    assert parse_traceparent(value) == ("a" * 32, "b" * 16, True)
    assert parse_traceparent(format_traceparent("a" * 32, "b" * 16, sampled=False)) == ("a" * 32, "b" * 16,
                                                                                        False)
    assert parse_traceparent(command_traceparent("e", "c")) == (trace_id_for("e"), command_span_id("e", "c"),
                                                                True)
    for bad in (None, "", "garbage", f"00-{'0' * 32}-{'b' * 16}-01", f"00-{'a' * 32}-{'0' * 16}-01",
                f"ff-{'a' * 32}-{'b' * 16}-01", f"00-{'A' * 32}-{'b' * 16}-01",
                f"00-{'a' * 32}-{'b' * 16}-01-x"):
        assert parse_traceparent(bad) is None
    # a later version may append fields
    assert parse_traceparent(f"01-{'a' * 32}-{'b' * 16}-01-more") == ("a" * 32, "b" * 16, True)


def test_a_command_without_traceparent_still_decodes() -> None:
    old = (b'{"type":"run_step","command_id":"c","execution_id":"e","step":"s","run":1,"pool":"default",'
           b'"tasks":[]}')
    [command] = decode_runs(old)
    assert command.traceparent is None
    assert b"traceparent" not in command.model_dump_json().encode()  # off: the wire is what it was
    traced = command.model_copy(update={"traceparent": command_traceparent("e", "c")})
    assert RunStep.model_validate_json(traced.model_dump_json()).traceparent == command_traceparent("e", "c")


def _event(type_: str, n: int, **fields: object) -> Event:
    return Event(event_id=f"ev{n}", idempotency_key=f"k{n}", execution_id="e1", type=type_,  # type: ignore[arg-type]
                 **fields)  # type: ignore[arg-type]


def test_spans_from_events_have_the_structure_of_the_execution() -> None:
    spans: list[SpanRecord] = []
    clock = iter(range(100, 10_000, 100))

    class Sink:
        def emit(self, span: SpanRecord) -> None:
            spans.append(span)

    recorder = TraceRecorder(Sink(), clock=lambda: next(clock))
    fail = ResultEnvelope.fail("server_error", "no", retryable=False)
    recorder.observe([_event("execution.started", 0, payload={"path": "p/x", "version": 2})])
    recorder.observe([_event("step.scheduled", 1, step="a", run=1, command_id="ca", pool="default"),
                      _event("step.deferred", 2, step="a", run=1, command_id="ca",
                             payload={"reason": "full"})])
    recorder.observe([_event("step.dispatched", 3, step="a", run=1, command_id="ca", pool="gpu",
                             payload={"commands": ["ca"]})])
    recorder.observe([_event("step.succeeded", 4, step="a", run=1, command_id="ca", worker="w1", attempt=1),
                      _event("loop.started", 5, step="l", run=1, payload={"count": 2}),
                      _event("step.scheduled", 6, step="l", run=1, loop_index=0, command_id="i0"),
                      _event("step.scheduled", 7, step="l", run=1, loop_index=1, command_id="i1")])
    recorder.observe([_event("loop.item.succeeded", 8, step="l", run=1, loop_index=0, command_id="i0"),
                      _event("loop.item.failed", 9, step="l", run=1, loop_index=1, command_id="i1",
                             result=fail)])
    recorder.observe([_event("loop.completed", 10, step="l", run=1),
                      _event("execution.failed", 11)])
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"dispatch wait a", "step a", "item l[0]", "item l[1]", "loop l", "execution p/x"}
    root = by_name["execution p/x"]
    assert root.parent_id is None and root.span_id == execution_span_id("e1")
    assert {span.trace_id for span in spans} == {trace_id_for("e1")}
    assert by_name["step a"].parent_id == root.span_id == by_name["loop l"].parent_id
    assert by_name["step a"].span_id == command_span_id("e1", "ca")
    assert by_name["dispatch wait a"].parent_id == by_name["step a"].span_id
    assert (by_name["dispatch wait a"].start_ns, by_name["dispatch wait a"].end_ns) == (200, 300)
    assert by_name["item l[0]"].parent_id == by_name["loop l"].span_id == loop_span_id("e1", "l", 1)
    assert by_name["item l[1]"].attributes["noetl.error.kind"] == "server_error" == by_name["item l[1]"].error
    assert by_name["step a"].attributes["noetl.worker"] == "w1"
    assert root.attributes["noetl.playbook.version"] == 2 and root.attributes["noetl.status"] == "failed"
    assert all(span.attributes["noetl.execution.id"] == "e1" for span in spans)
    assert (root.start_ns, root.end_ns) == (100, 600)


def test_an_outcome_of_a_command_scheduled_before_a_takeover_gets_a_span_all_the_same() -> None:
    spans: list[SpanRecord] = []

    class Sink:
        def emit(self, span: SpanRecord) -> None:
            spans.append(span)

    recorder = TraceRecorder(Sink(), clock=lambda: 5_000_000_000)
    recorder.observe([_event("step.succeeded", 1, step="a", run=1, command_id="ca", duration_ms=1000.0)])
    [span] = spans
    assert span.span_id == command_span_id("e1", "ca") and span.parent_id == execution_span_id("e1")
    assert span.start_ns == 4_000_000_000


def test_the_executions_followed_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traces, "MAX_TRACES", 3)
    recorder = TraceRecorder(_ListSink(), clock=lambda: 1)
    for n in range(5):
        recorder.observe([Event(event_id=f"s{n}", idempotency_key=f"s{n}", execution_id=f"e{n}",
                                type="execution.started")])
    assert list(recorder._traces) == ["e2", "e3", "e4"]


class _ListSink:
    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []

    def emit(self, span: SpanRecord) -> None:
        self.spans.append(span)


def test_otlp_encoding_decodes_with_opentelemetry_proto() -> None:
    body = encode_spans([SpanRecord("a" * 32, "b" * 16, "c" * 16, "step x", 1, 2, {"n": 1, "s": "v", "f": 0.5,
                                                                                 "b": True}, "http")],
                        {"service.name": "noetl"})
    request = ExportTraceServiceRequest.FromString(body)
    [span] = request.resource_spans[0].scope_spans[0].spans
    assert span.trace_id.hex() == "a" * 32 and span.parent_span_id.hex() == "c" * 16
    assert {kv.key for kv in span.attributes} == {"n", "s", "f", "b"}
    assert span.status.message == "http"


def test_settings_turn_tracing_on_only_with_an_endpoint() -> None:
    assert otlp_endpoint({}) is None
    assert exporter_from_env({}) is None
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/t",
                          "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}) == "http://c/t"
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}) is None
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"}) is None
    exporter = exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                                  "OTEL_EXPORTER_OTLP_HEADERS": "a=b%20c", "OTEL_SERVICE_NAME": "svc",
                                  "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})
    assert exporter is not None
    try:
        assert exporter.headers["a"] == "b c"
        assert exporter.resource == {"deployment.environment": "test", "service.name": "svc"}
    finally:
        exporter.close()
