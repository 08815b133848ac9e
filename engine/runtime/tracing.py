"""OpenTelemetry export of spans over OTLP/HTTP (protobuf): the only module that imports opentelemetry.

The engine builds its spans itself (engine.runtime.traces on the orchestrator, the step runner on the
worker) as `SpanRecord`s with ids derived from the execution's (engine.protocol.tracecontext), so that a
replay or a takeover names the same spans; this module only ships them. Nothing here runs unless
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: `exporter_from_env`
returns None and the callers' only cost is a check of that None.

Standard variables read (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):
OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER (`none` turns tracing off), OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT,
..._HEADERS, ..._TIMEOUT (ms), ..._COMPRESSION (gzip), OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_BSP_SCHEDULE_DELAY (ms), OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE. Only the
http/protobuf protocol is spoken; another OTEL_EXPORTER_OTLP_PROTOCOL is logged and ignored.
"""

from __future__ import annotations

import gzip
import logging
import os
import queue
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from engine.runtime.spans import AttributeValue, SpanRecord, otlp_endpoint

log = logging.getLogger(__name__)

SCOPE = "noetl"


def encode_spans(spans: Sequence[SpanRecord], resource: Mapping[str, AttributeValue]) -> bytes:
    """An OTLP ExportTraceServiceRequest (protobuf) with the spans under one resource and scope."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _set_attributes(resource_spans.resource.attributes, resource)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = SCOPE
    ok, error = Status.STATUS_CODE_OK, Status.STATUS_CODE_ERROR
    for record in spans:
        span = scope_spans.spans.add()
        span.trace_id = bytes.fromhex(record.trace_id)
        span.span_id = bytes.fromhex(record.span_id)
        if record.parent_id:
            span.parent_span_id = bytes.fromhex(record.parent_id)
        span.name = record.name
        span.kind = record.kind
        span.start_time_unix_nano = record.start_ns
        span.end_time_unix_nano = max(record.end_ns, record.start_ns)
        _set_attributes(span.attributes, record.attributes)
        if record.error is not None:
            span.status.code = error
            span.status.message = record.error
        else:
            span.status.code = ok
    return request.SerializeToString()


def _set_attributes(out: Any, values: Mapping[str, AttributeValue]) -> None:
    for key, value in values.items():
        pair = out.add()
        pair.key = key
        if isinstance(value, bool):
            pair.value.bool_value = value
        elif isinstance(value, int):
            pair.value.int_value = value
        elif isinstance(value, float):
            pair.value.double_value = value
        else:
            pair.value.string_value = str(value)


class OtlpExporter:
    """A batching span exporter: `emit` queues (dropping when the queue is full), a daemon thread posts
    batches every `delay_s` or when `max_batch` spans wait; `close` sends what is left."""

    def __init__(self, endpoint: str, *, headers: Mapping[str, str] | None = None,
                 resource: Mapping[str, AttributeValue] | None = None, timeout_s: float = 10.0,
                 delay_s: float = 5.0, max_batch: int = 512, max_queue: int = 2048, gzip_body: bool = False):
        self.endpoint = endpoint
        self.headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
        if gzip_body:
            self.headers["Content-Encoding"] = "gzip"
        self.resource = dict(resource or {})
        self.timeout_s, self.delay_s, self.max_batch = timeout_s, delay_s, max_batch
        self.gzip_body = gzip_body
        self.dropped = 0
        self.exported = 0
        self._queue: queue.Queue[SpanRecord | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._failed_at = 0.0
        self._thread = threading.Thread(target=self._run, name="noetl-otlp", daemon=True)
        self._thread.start()

    def emit(self, span: SpanRecord) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(span)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued and stop the thread (waits at most `timeout_s`)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    def _run(self) -> None:
        batch: list[SpanRecord] = []
        deadline = time.monotonic() + self.delay_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = ...  # type: ignore[assignment]
            if item is None:
                self._send(batch)
                return
            if isinstance(item, SpanRecord):
                batch.append(item)
            if len(batch) >= self.max_batch or time.monotonic() >= deadline:
                self._send(batch)
                batch = []
                deadline = time.monotonic() + self.delay_s

    def _send(self, batch: list[SpanRecord]) -> None:
        if not batch:
            return
        body = encode_spans(batch, self.resource)
        if self.gzip_body:
            body = gzip.compress(body)
        request = urllib.request.Request(self.endpoint, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
            self.exported += len(batch)
        except Exception as exc:  # the collector is away: the spans are dropped, the runtime goes on
            self.dropped += len(batch)
            if time.monotonic() - self._failed_at > 60.0:  # at most one warning a minute
                self._failed_at = time.monotonic()
                log.warning("exporting %d spans to %s failed: %s", len(batch), self.endpoint, exc)


def exporter_from_env(env: Mapping[str, str] | None = None, *, service: str = "noetl") -> OtlpExporter | None:
    """The exporter the OTEL_* variables of `env` (default: os.environ) describe; None (tracing off)
    when no OTLP endpoint is set, OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is `none`."""
    env = os.environ if env is None else env
    endpoint = otlp_endpoint(env)
    if endpoint is None:
        return None
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip()
    if protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported; exporting with http/protobuf", protocol)
    headers = _pairs(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    headers.update(_pairs(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")))
    resource: dict[str, AttributeValue] = dict(_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    resource["service.name"] = env.get("OTEL_SERVICE_NAME") or str(resource.get("service.name") or service)
    compression = (env.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
                   or env.get("OTEL_EXPORTER_OTLP_COMPRESSION") or "").strip().lower()
    timeout_ms = _number(env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                         or env.get("OTEL_EXPORTER_OTLP_TIMEOUT"), 10000)
    return OtlpExporter(endpoint, headers=headers, resource=resource, timeout_s=timeout_ms / 1000,
                        delay_s=_number(env.get("OTEL_BSP_SCHEDULE_DELAY"), 5000) / 1000,
                        max_batch=int(_number(env.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), 512)),
                        max_queue=int(_number(env.get("OTEL_BSP_MAX_QUEUE_SIZE"), 2048)),
                        gzip_body=compression == "gzip")


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default
