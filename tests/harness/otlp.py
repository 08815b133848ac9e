"""An in-process OTLP/HTTP collector: it decodes the protobuf export requests (opentelemetry-proto) sent
to `<url>/v1/traces` and keeps their spans, for tests of the runtime's tracing."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.harness.http_server import serving


@dataclass(frozen=True)
class CollectedSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: str | None  # the status message of a span whose status is ERROR
    service: str


@dataclass
class Collector:
    url: str = ""
    spans: list[CollectedSpan] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_execution(self, execution_id: str) -> list[CollectedSpan]:
        with self.lock:
            return [s for s in self.spans if s.attributes.get("noetl.execution.id") == execution_id]

    def take(self, request: ExportTraceServiceRequest) -> None:
        out = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    out.append(CollectedSpan(
                        span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex() or None, span.name,
                        span.start_time_unix_nano, span.end_time_unix_nano,
                        {kv.key: _value(kv.value) for kv in span.attributes},
                        span.status.message if span.status.code == span.status.STATUS_CODE_ERROR else None,
                        str(resource.get("service.name"))))
        with self.lock:
            self.requests += 1
            self.spans.extend(out)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    """A collector listening on a free 127.0.0.1 port until the block ends; its `url` is the value of
    OTEL_EXPORTER_OTLP_ENDPOINT."""
    collector = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_response(404)
                self.end_headers()
                return
            collector.take(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        collector.url = url
        yield collector
