"""Spans as the engine builds them (ids derived in engine.protocol.tracecontext), and the Protocol of
where they go: the exporter in engine.runtime.tracing, the only module that imports opentelemetry."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

AttributeValue = str | int | float | bool
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 1, 2, 3, 4, 5


@dataclass(slots=True)
class SpanRecord:
    """One finished span. Ids are lower-case hex (32 digits for the trace, 16 for spans); times are
    nanoseconds since the epoch. `error` is the status message of a failed span (None: ok)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    error: str | None = None
    kind: int = KIND_INTERNAL


class SpanSink(Protocol):
    """Where finished spans go (an exporter); never blocks and never raises."""

    def emit(self, span: SpanRecord) -> None: ...


def otel_settings(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OTEL_* variables of `env` (default: os.environ): what an entry point hands to the runtime."""
    env = os.environ if env is None else env
    return {key: value for key, value in env.items() if key.startswith("OTEL_")}


def otlp_endpoint(env: Mapping[str, str]) -> str | None:
    """Where the OTEL_* variables say spans go over OTLP/HTTP; None (tracing off) when no endpoint is
    set, OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER does not name `otlp` (e.g. `none`). Checked
    before engine.runtime.tracing (and opentelemetry) is imported at all."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if "otlp" not in {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}:
        return None
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None
