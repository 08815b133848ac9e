"""HTTP errors carry NoETL's kinds and fields, and an http result reads its body as `data`, `body` or
directly, from a tool call through policy rules and templates (spec sections 3, 7 and 9)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from engine.protocol.commands import RunStep
from engine.protocol.events import Event, decode_events, encode_events
from engine.protocol.results import ResultEnvelope
from engine.runtime.step_runner import StepRunner
from engine.tools.base import Tool
from engine.tools.http_tool import HttpTool
from engine.tools.noop_tool import NoopTool
from tests.harness.http_server import reply_json, serving
from tests.integration.tools.conftest import make_call

pytestmark = pytest.mark.anyio

PAGE = {"paging": {"hasMore": True, "page": 2}, "items": [{"id": 1}, {"id": 2}]}


class _Api(BaseHTTPRequestHandler):
    """/limited → 429 with Retry-After: 7; /missing → 404; /bad → 400; /down → 503; /page → 200 JSON;
    /flaky/<key>?fail=N → 429 the first N times a key is asked, then the page."""

    protocol_version = "HTTP/1.1"
    asked: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        reply_json(self, status, value, headers)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/limited":
            self._json(429, {"error": "slow down"}, {"Retry-After": "7"})
        elif path == "/missing":
            self._json(404, {"error": "no such order"})
        elif path == "/bad":
            self._json(400, {"error": "bad id"})
        elif path == "/down":
            self._json(503, {"error": "maintenance"})
        elif path == "/page":
            self._json(200, PAGE)
        elif path.startswith("/flaky/"):
            fail = int(query.partition("fail=")[2] or 2)
            with self.lock:
                seen = self.asked[path] = self.asked.get(path, 0) + 1
            if seen <= fail:
                self._json(429, {"error": "slow down"}, {"Retry-After": "0"})
            else:
                self._json(200, PAGE)
        else:
            self._json(404, {"error": "no route"})


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serving(_Api) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[HttpTool]:
    tool = HttpTool()
    yield tool
    await tool.close()


class _Tools:
    def __init__(self, http: HttpTool) -> None:
        self.tools: dict[str, Tool] = {"http": http, "noop": NoopTool()}

    def get(self, kind: str) -> Tool:
        return self.tools[kind]


async def run_step(http: HttpTool, tasks: list[dict[str, Any]],
                   context: dict[str, Any] | None = None) -> tuple[ResultEnvelope, list[Event]]:
    reported: list[Event] = []

    async def report(event: Event) -> None:
        reported.append(event)

    async def no_wait(seconds: float) -> None:
        return None

    command = RunStep(command_id="c1", execution_id="x1", step="fetch", run=1, pool="default", tasks=tasks,
                      context=context or {})
    command = RunStep.model_validate_json(command.model_dump_json())  # as the worker receives it
    outcome = await StepRunner(_Tools(http), sleep=no_wait, started_delay_s=0).run(command, report)
    assert outcome.event.result is not None
    return outcome.event.result, reported


# ------------------------------------------------------------------------------------ the tool alone
async def test_a_429_is_a_retryable_rate_limit_with_its_status_code_and_retry_after(
        http: HttpTool, api: str) -> None:
    env = await http.run(make_call("http", {"url": f"{api}/limited"}))
    assert env.status == "error" and env.error is not None
    error = env.error
    assert (error.kind, error.retryable, error.code) == ("rate_limit", True, "HTTP_429")
    assert error.http_status == 429 and error.status == 429 and error.retry_after == 7.0
    assert error.source == "http"


@pytest.mark.parametrize(("path", "status", "kind", "retryable"), [
    ("/missing", 404, "not_found", False),
    ("/bad", 400, "client_error", False),
    ("/down", 503, "server_error", True),
])
async def test_an_error_status_has_its_kind_and_keeps_the_response_fields(
        http: HttpTool, api: str, path: str, status: int, kind: str, retryable: bool) -> None:
    env = await http.run(make_call("http", {"url": f"{api}{path}"}))
    assert env.status == "error" and env.error is not None
    error = env.error
    assert (error.kind, error.retryable, error.code) == (kind, retryable, f"HTTP_{status}")
    assert error.source == "http"
    assert error.http_status == status and error.status == status and error.retry_after is None
    data = env.data
    assert data["status_code"] == status and data["url"] == f"{api}{path}" and data["elapsed_ms"] > 0
    assert data["headers"]["content-type"] == "application/json"
    assert data["data"] == data["body"] and "error" in data["body"]


async def test_a_successful_call_has_its_parsed_body_as_both_data_and_body(http: HttpTool, api: str) -> None:
    env = await http.run(make_call("http", {"url": f"{api}/page"}))
    assert env.status == "ok" and env.error is None
    assert set(env.data) == {"status_code", "headers", "url", "elapsed_ms", "data", "body"}
    assert env.data["data"] == PAGE and env.data["body"] == PAGE


async def test_the_body_travels_once_in_an_event_and_reads_back_as_both(http: HttpTool, api: str) -> None:
    env = await http.run(make_call("http", {"url": f"{api}/page"}))
    event = Event(event_id="e1", idempotency_key="c1:outcome", execution_id="x1", type="step.succeeded",
                  step="fetch", result=env)
    wire = encode_events([event])
    assert wire.count(b'"hasMore"') == 1
    [back] = decode_events(wire)
    assert back.result is not None
    assert back.result.data["body"] == PAGE and back.result.data["data"] == PAGE


# ----------------------------------------------------------------------- in pipelines and templates
async def test_a_rule_on_the_rate_limit_kind_retries_until_the_server_answers(http: HttpTool,
                                                                               api: str) -> None:
    rule = {"when": "{{ output.status == 'error' and output.error.kind == 'rate_limit' }}",
            "then": {"do": "retry", "attempts": 5, "delay": 0}}
    result, reported = await run_step(http, [{"kind": "http", "url": f"{api}/flaky/rule-kind?fail=2",
                                              "spec": {"policy": {"rules": [rule]}}}])
    assert result.status == "ok" and result.data["body"] == PAGE
    failures = [e for e in reported if e.type == "task.attempt.failed"]
    assert len(failures) == 2 and [e.type for e in reported].count("step.retrying") == 2
    errors = [e.result.error for e in failures if e.result is not None and e.result.error is not None]
    assert [(e.kind, e.http_status, e.source) for e in errors] == [("rate_limit", 429, "http")] * 2


async def test_rules_read_the_error_status_its_alias_and_output_http_on_an_error(http: HttpTool,
                                                                                api: str) -> None:
    holds = ("{{ output.error.status == 429 and output.error.http_status == 429 and output.http.status == 429"
             " and output.http.url.endswith('/flaky/rule-status?fail=1') and output.http.elapsed_ms > 0"
             " and output.http.headers['retry-after'] == '0' and output.data.error == 'slow down' }}")
    rule = {"when": holds, "then": {"do": "retry", "attempts": 3, "delay": 0}}
    result, reported = await run_step(http, [{"kind": "http", "url": f"{api}/flaky/rule-status?fail=1",
                                              "spec": {"policy": {"rules": [rule]}}}])
    assert result.status == "ok"
    assert [e.type for e in reported].count("step.retrying") == 1


async def test_templates_read_a_key_the_result_lacks_from_its_body_as_data_and_as_body(
        http: HttpTool, api: str) -> None:
    show = {"kind": "noop", "name": "show",
            "result": {"direct": "{{ page.paging.hasMore }}", "data": "{{ page.data.paging.hasMore }}",
                       "body": "{{ page.body.paging.page }}", "status": "{{ page.status_code }}"}}
    result, _ = await run_step(http, [{"kind": "http", "name": "page", "url": f"{api}/page"}, show])
    assert result.data == {"direct": True, "data": True, "body": 2, "status": 200}


async def test_a_stored_http_result_of_an_earlier_step_reads_the_same_three_ways(http: HttpTool,
                                                                                  api: str) -> None:
    env = await http.run(make_call("http", {"url": f"{api}/page"}))
    context = {"results": {"earlier": {"data": env.data}}, "step_names": ["earlier", "fetch"]}
    show = {"kind": "noop", "result": {"direct": "{{ earlier.paging.page }}",
                                       "data": "{{ earlier.data.paging.page }}",
                                       "body": "{{ earlier.body.paging.page }}"}}
    assert RunStep(command_id="c", execution_id="x", step="s", run=1, pool="p", tasks=[],
                   context=context).model_dump_json().count('"hasMore"') == 1
    result, _ = await run_step(http, [show], context)
    assert result.data == {"direct": 2, "data": 2, "body": 2}


async def test_a_task_set_reads_the_body_through_output_output_data_and_output_data_body(
        http: HttpTool, api: str) -> None:
    fetch = {"kind": "http", "name": "page", "url": f"{api}/page",
             "set": {"seen": "{{ [output.paging.page, output.data.paging.page, output.data.body.paging.page,"
                             " output.http.status] }}"}}
    result, _ = await run_step(http, [fetch, {"kind": "noop", "name": "show", "result": "{{ seen }}"}])
    assert result.data == [2, 2, 2, 200]
