"""Trace context of executions (W3C Trace Context, https://www.w3.org/TR/trace-context/): pure.

Every id is derived from the execution's own ids, never drawn at random: the orchestrator that replays an
execution, or takes it over from another, names the same trace and the same spans. The trace of an
execution is `trace_id_for(execution_id)`; a step's span (one run of it, or one loop item: one command) is
`command_span_id(execution_id, command_id)`, and the worker's tool calls are its children through the
command's `traceparent`."""

from __future__ import annotations

import hashlib
import os
import re

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def _hex(length: int, *parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:length]
    return digest if digest.strip("0") else "1".rjust(length, "0")  # all zeros is invalid (W3C)


def trace_id_for(execution_id: str) -> str:
    """The trace id (32 lower-case hex digits) of an execution: the same on every replay and takeover."""
    return _hex(32, "noetl.trace", execution_id)


def span_id_for(*parts: object) -> str:
    """A span id (16 lower-case hex digits) derived from what names the span."""
    return _hex(16, "noetl.span", *parts)


def random_span_id() -> str:
    """A span id for what is not replayed (a worker's tool call)."""
    return os.urandom(8).hex()


def execution_span_id(execution_id: str) -> str:
    """The root span: the execution."""
    return span_id_for(execution_id)


def command_span_id(execution_id: str, command_id: str) -> str:
    """A step's span: one run of a step or one loop item, from its command's dispatch to its outcome."""
    return span_id_for(execution_id, "command", command_id)


def loop_span_id(execution_id: str, step: str, run: int | None) -> str:
    """A loop step's span (one run of it), the parent of its items' spans."""
    return span_id_for(execution_id, "loop", step, run or 0)


def wait_span_id(execution_id: str, command_id: str) -> str:
    """A command's wait for capacity (step.deferred to step.dispatched), a child of the command's span."""
    return span_id_for(execution_id, "wait", command_id)


def format_traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """The `traceparent` header value: version 00."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """(trace id, parent span id, sampled) of a `traceparent` value; None when absent or malformed
    (an invalid header is ignored, as the specification says)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or not trace_id.strip("0") or not span_id.strip("0"):
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def command_traceparent(execution_id: str, command_id: str) -> str:
    """The `traceparent` a command carries: its tool calls are children of the command's span."""
    return format_traceparent(trace_id_for(execution_id), command_span_id(execution_id, command_id))
