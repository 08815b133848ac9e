"""OpenTelemetry tracing (docs/insights.md "Tracing"): a real execution's spans reach an in-process OTLP
collector with the execution's structure (execution -> step -> tool call, loop -> items, item -> its wait
for capacity), across processes (the worker runs in its own), in the trace its events record; with no
endpoint configured nothing is exported and the run works the same."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.stack import Stack
from engine.plan.pools import parse_pools
from engine.protocol.tracecontext import command_span_id, execution_span_id, trace_id_for
from tests.harness.otlp import Collector, otlp_collector
from tests.harness.polling import poll
from tests.harness.runtime import stack_config_of

pytestmark = pytest.mark.anyio

# one cpu unit in the pool: the loop's items (one unit each) wait for one another
POOLS = parse_pools(textwrap.dedent("""\
    pools:
      - {name: default, labels: [cpu], capacity: {cpu: 1}}
    """), "<test pools>")


def playbook() -> str:
    name = f"traced_{uuid.uuid4().hex[:8]}"
    return textwrap.dedent(f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}, path: tests/{name}}}
        workflow:
          - step: start
            tool: {{kind: python, code: "result = 1"}}
            next: fan
          - step: fan
            loop: {{in: "{{{{ range(3) | list }}}}", iterator: x, spec: {{mode: parallel, max_in_flight: 3}}}}
            spec: {{resources: {{cpu: 1}}}}
            tool: {{kind: python, code: "result = x"}}
            next: end
          - step: end
            tool: {{kind: python, code: "result = 2"}}
        """)


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as running:
        yield running


async def run(stack: Stack) -> tuple[str, dict[str, object], list[dict[str, object]]]:
    assert stack.executions is not None and stack.store is not None
    registered = await stack.executions.register(playbook())
    execution_id = await stack.executions.start(registered.path)
    summary = await stack.executions.wait(execution_id, timeout_s=90)
    events = await stack.store.events.events(execution_id)
    return execution_id, summary, [e.model_dump() for e in events]


async def test_an_execution_s_spans_reach_the_collector_with_its_structure(
        runtime_env: dict[str, str], collector: Collector) -> None:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SERVICE_NAME": "noetl-test"}
    async with Stack(stack_config_of(runtime_env, workers={"default": 4}, pools=POOLS, worker_processes=True,
                                     otel=otel)) as stack:
        assert stack.tracer is not None
        execution_id, summary, events = await run(stack)
        assert summary["status"] == "completed", summary
        trace_id = trace_id_for(execution_id)
        assert summary["trace_id"] == trace_id  # what `noetl status ID --json` shows
        [started] = [e for e in events if e["type"] == "execution.started"]
        assert started["payload"]["trace_id"] == trace_id  # recorded in the event log

        def complete() -> list[object] | None:
            spans = collector.of_execution(execution_id)
            names = [s.name for s in spans]
            tools = [s for s in spans if s.name.startswith("tool ")]
            return spans if any(n.startswith("execution ") for n in names) and len(tools) >= 5 else None

        await poll(complete, timeout_s=30, what="the execution's spans at the collector")
        spans = collector.of_execution(execution_id)
    assert {s.trace_id for s in spans} == {trace_id}
    assert {s.service for s in spans} == {"noetl-test"}
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans)  # no span twice
    [root] = [s for s in spans if s.parent_id is None]
    assert root.span_id == execution_span_id(execution_id) and root.name.startswith("execution tests/traced_")
    assert root.attributes["noetl.status"] == "completed" and root.attributes["noetl.playbook.version"] == 1
    steps = {s.attributes["noetl.step"]: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {"start", "end"} and all(s.parent_id == root.span_id for s in steps.values())
    [loop] = [s for s in spans if s.name == "loop fan"]
    assert loop.parent_id == root.span_id
    items = [s for s in spans if s.name.startswith("item fan[")]
    assert sorted(s.attributes["noetl.loop.index"] for s in items) == [0, 1, 2]
    assert all(s.parent_id == loop.span_id for s in items)
    for step in [*steps.values(), *items]:
        assert step.span_id == command_span_id(execution_id, str(step.attributes["noetl.command.id"]))
        assert step.attributes["noetl.status"] == "succeeded" and step.attributes["noetl.worker"]
        assert root.start_ns <= step.start_ns <= step.end_ns <= root.end_ns
        # the tool call ran on the worker (another process), inside the step's span
        [tool] = [s for s in spans if s.name.startswith("tool ") and s.parent_id == step.span_id]
        assert tool.attributes["noetl.tool.kind"] == "python" and tool.attributes["noetl.attempt"] == 1
        assert tool.attributes["noetl.worker"] == step.attributes["noetl.worker"]
    waits = [s for s in spans if s.name == "dispatch wait fan"]
    assert waits, "one cpu unit and three items: some item waited for capacity"
    assert all(by_id[str(s.parent_id)] in items for s in waits)
    assert all(s.end_ns >= s.start_ns for s in spans)
    assert all("noetl.execution.id" in s.attributes for s in spans)
    # no inputs or results in spans: only ids, names and outcomes
    assert not any(key.startswith(("noetl.input", "noetl.result")) for s in spans for key in s.attributes)


@pytest.mark.parametrize("otel", [{}, {"OTEL_TRACES_EXPORTER": "none"}], ids=["unset", "exporter-none"])
async def test_without_an_endpoint_nothing_is_exported_and_the_run_works(
        runtime_env: dict[str, str], collector: Collector, otel: dict[str, str]) -> None:
    if otel:  # an endpoint is named, but the exporter is turned off
        otel = {**otel, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
    async with Stack(stack_config_of(runtime_env, workers={"default": 4}, otel=otel)) as stack:
        assert stack.tracer is None
        assert stack.orchestrator is not None and stack.orchestrator._traces is None
        execution_id, summary, _ = await run(stack)
    assert summary["status"] == "completed", summary
    assert summary["trace_id"] == trace_id_for(execution_id)  # the trace id is known all the same
    assert collector.requests == 0 and collector.spans == []
    if not otel:  # the CLI shows it
        shown = subprocess.run([sys.executable, "-m", "noetl.cli", "status", execution_id, "--json"],
                               env=runtime_env, capture_output=True, timeout=60, check=True)
        assert json.loads(shown.stdout)["trace_id"] == trace_id_for(execution_id)


async def test_an_orchestrator_that_takes_an_execution_over_continues_its_trace(
        runtime_env: dict[str, str], collector: Collector, tmp_path: Path) -> None:
    """The ids are derived, not remembered: the orchestrator that resumes an execution after another
    stopped names the same trace, and the step that was running when it took over gets the span its
    tool call (on a worker that kept running) already names as its parent."""
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    go = tmp_path / "go"
    name = f"takeover_{uuid.uuid4().hex[:8]}"
    text = textwrap.dedent(f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}, path: tests/{name}}}
        workflow:
          - step: slow
            tool:
              kind: python
              code: |
                import os, time
                while not os.path.exists({str(go)!r}):
                    time.sleep(0.02)
                result = 1
            next: after
          - step: after
            tool: {{kind: python, code: "result = 2"}}
        """)
    async with Stack(stack_config_of(runtime_env, orchestrator=False, workers={"default": 2},
                                     otel=otel)) as workers:
        assert workers.executions is not None and workers.store is not None
        store = workers.store
        async with Stack(stack_config_of(runtime_env, workers={}, otel=otel)) as first:
            assert first.executions is not None
            execution_id = await first.executions.start((await first.executions.register(text)).path)

            async def running() -> bool:
                return any(e.type == "step.started" for e in await store.events.events(execution_id))
            await poll(running, timeout_s=30, what="the slow step running")
        async with Stack(stack_config_of(runtime_env, workers={}, otel=otel)) as second:
            assert second.executions is not None
            go.touch()
            summary = await second.executions.wait(execution_id, timeout_s=60)
            assert summary["status"] == "completed", summary

            def ended() -> bool:
                names = [s.name for s in collector.of_execution(execution_id)]
                return any(n.startswith("execution ") for n in names) and \
                    sum(n.startswith("tool ") for n in names) >= 2
            await poll(ended, timeout_s=30, what="the execution's spans at the collector")
    spans = collector.of_execution(execution_id)
    assert {s.trace_id for s in spans} == {trace_id_for(execution_id)}
    [root] = [s for s in spans if s.parent_id is None]
    assert root.span_id == execution_span_id(execution_id)
    steps = {s.attributes["noetl.step"]: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {"slow", "after"} and all(s.parent_id == root.span_id for s in steps.values())
    for step in steps.values():  # the tool call, made under the first orchestrator's command for `slow`
        [tool] = [s for s in spans if s.name.startswith("tool ") and s.parent_id == step.span_id]
        assert tool.attributes["noetl.step"] == step.attributes["noetl.step"]
