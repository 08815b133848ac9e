"""Spec section 16 (other NoETL keys: implemented, accepted, or refused) and the http tool (section 3),
against a small HTTP server this module starts on 127.0.0.1; each case is a playbook run through the real
stack with `noetl run --json`."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.e2e.helpers import (
    Batch,
    Case,
    Noetl,
    branch_error,
    completed,
    fan_out,
    inline,
    make_playbook,
    of_type,
)

SECRET_TOKEN = f"tok-{uuid.uuid4().hex}"


class _Handler(BaseHTTPRequestHandler):
    """/echo: the request as JSON; /flaky/KEY/N: 503 for the first N calls of KEY, then 200;
    /status/CODE: that status."""

    calls: dict[str, int] = {}
    lock = threading.Lock()

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        segments = parts.path.strip("/").split("/")
        if segments[0] == "echo":
            self._reply(200, {"method": self.command, "path": parts.path,
                              "query": dict(parse_qsl(parts.query)),
                              "content_type": self.headers.get("Content-Type"),
                              "x_test": self.headers.get("X-Test"),
                              "authorization": self.headers.get("Authorization"), "body": body})
        elif segments[0] == "flaky":
            key, failures = segments[1], int(segments[2])
            with self.lock:
                self.calls[key] = self.calls.get(key, 0) + 1
                count = self.calls[key]
            if count <= failures:
                self._reply(503, {"error": "busy", "call": count})
            else:
                self._reply(200, {"ok": True, "calls": count})
        elif segments[0] == "status":
            self._reply(int(segments[1]), {"code": int(segments[1])})
        else:
            self._reply(404, {"error": "no such path"})

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, format: str, *args: object) -> None:
        return


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_step(name: str, config: str) -> str:
    return f"""\
        workflow:
          - step: {name}
            tool: {{kind: http, {config}}}
        """


def build_cases(base: str, scratch: Path, credential: str | None) -> dict[str, Case]:
    counter = scratch / "tool_retry.txt"
    flaky = (f"import os\npath = {str(counter)!r}\n"
             "n = int(open(path).read() or 0) + 1 if os.path.exists(path) else 1\n"
             "open(path, 'w').write(str(n))\n"
             "if n < 3:\n    raise ConnectionError(f'attempt {n}')\nresult = n\n")
    cases = {
        "http": Case(inline("http", fan_out({
            "post": f'{{kind: http, method: post, endpoint: "{base}/echo", verify_ssl: false, '
                    'timeout_seconds: 5, headers: {X-Test: "yes"}, form: {a: 1, b: two}}',
            "get": f'{{kind: http, url: "{base}/echo", params: {{q: "{{{{ workload.q }}}}", n: 2}}}}',
            "get_payload": f'{{kind: http, url: "{base}/echo", payload: {{q: z}}}}',
            "put": f'{{kind: http, method: PUT, url: "{base}/echo", json: {{items: [1, 2]}}}}',
            "e404": f'{{kind: http, url: "{base}/status/404"}}',
            "e429": f'{{kind: http, url: "{base}/status/429"}}',
            "e503": f'{{kind: http, url: "{base}/status/503"}}',
            "refused": f'{{kind: http, url: "http://127.0.0.1:{closed_port()}/", timeout: 5}}',
        }, head='workload: {q: "x y"}'))),
        "http_handle": Case(inline("http_handle", f"""\
            workflow:
              - step: call
                tool: {{kind: http, url: "{base}/echo", params: {{who: ann}}}}
                next: {{arcs: [{{step: read}}]}}
              - step: read
                tool:
                  kind: python
                  input: {{code: "{{{{ call.status_code }}}}", method: "{{{{ call.method }}}}",
                          who: "{{{{ call.query.who }}}}", full: "{{{{ call.data.query.who }}}}"}}
                  code: "result = [code, method, who, full]"
            """)),
        "http_retry_on_status": Case(inline("http_retry_on_status", f"""\
            workflow:
              - step: call
                tool:
                  kind: http
                  url: "{base}/flaky/{uuid.uuid4().hex}/2"
                  retry: {{max_attempts: 4, retry_on_status: [503], backoff_seconds: 0.05}}
            """), events=True),
        "tool_keys": Case(inline("tool_keys", fan_out({
            "flaky": f"{{kind: python, retry: {{max_attempts: 3, initial_delay: 0.05}}, "
                     f"code: {json.dumps(flaky)}}}",
            "nested": '{kind: python, spec: {input: {x: 2}, code: "result = x * 21", policy: {rules: '
                      '[{when: "{{ output.data != 42 }}", then: {do: fail}}]}}}',
            "calc": '{kind: python, libs: [math, json], code: "result = json.dumps([math.floor(2.7)])"}',
        }))),
        "cond_alias": Case(inline("cond_alias", """\
            workflow:
              - step: start
                tool: {kind: noop, result: {go: false}}
                next:
                  arcs:
                    - {step: a, cond: "{{ start.go }}"}
                    - {step: b, cond: "{{ not start.go }}"}
              - {step: a, tool: {kind: noop}}
              - {step: b, tool: {kind: noop, result: b}}
            """)),
        "admit": Case(inline("admit", """\
            workload: {enabled: false}
            workflow:
              - step: start
                tool: {kind: noop}
                next: {spec: {mode: inclusive}, arcs: [{step: gated}, {step: open}]}
              - step: gated
                spec:
                  policy:
                    admit:
                      rules:
                        - when: "{{ workload.enabled }}"
                          then: {allow: true}
                        - else: {then: {allow: false}}
                tool: {kind: noop, result: gated}
                next: {arcs: [{step: after_gated}]}
              - {step: after_gated, tool: {kind: noop}}
              - {step: open, tool: {kind: noop, result: open}}
            """), events=True),
        "accepted_hints": Case(make_playbook(f"accepted_hints_{uuid.uuid4().hex[:8]}", """\
            tracing: {enabled: true}
            executor:
              profile: local
              version: 2
              requires: {tools: [python, noop]}
            workbook:
              - name: one
                tool: {kind: python, code: "result = {'result': 1}"}
                assert: {expects: [], returns: [result]}
            workflow:
              - step: start
                loop: {in: [1, 2], iterator: i, spec: {policy: {exec: distributed}}}
                tool: {kind: workbook, name: one}
                next:
                  spec: {mode: exclusive, on_no_match: quiet}
                  arcs: [{step: never, when: "{{ false }}"}]
              - {step: never, tool: {kind: noop}}
            """).replace("metadata: {", "metadata: {labels: {team: risk}, exposed_in_ui: true, ", 1)),
        "output_select": Case(inline("output_select", """\
            workflow:
              - step: big
                output: {select: [summary]}
                tool: {kind: python, code: "result = {'summary': {'rows': 3}, 'rows': [1, 2, 3]}"}
                next: {arcs: [{step: read}]}
              - step: read
                tool: {kind: python, input: {r: "{{ big.rows }}", s: "{{ big.summary }}"},
                       code: "result = {'rows': r, 'summary': s}"}
            """), events=True),
    }
    if credential is not None:
        cases["credential_alias"] = Case(inline("credential_alias", http_step(
            "call", f'url: "{base}/echo", credential: {credential}')), events=True)
    return cases


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def http_credential(e2e_stack: Noetl) -> str | None:
    """A stored bearer credential (None when this NoETL has no `noetl credential` command)."""
    name = f"e2e_http_{uuid.uuid4().hex[:8]}"
    stored = e2e_stack("credential", "set", name, "--type", "http",
                       "--data", json.dumps({"token": SECRET_TOKEN}))
    return name if stored.returncode == 0 else None


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl, http_base: str, http_credential: str | None,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    batch = e2e_stack.batch(build_cases(http_base, tmp_path_factory.mktemp("keys"), http_credential))
    yield batch
    batch.close()




# ---------------------------------------------------------------------- http
def test_http_endpoint_verify_ssl_timeout_seconds_and_form_aliases_work(runs: Batch) -> None:
    run = runs["http"]
    completed(run)
    result = run.step("post")["result"]
    assert result["status_code"] == 200
    assert result["data"]["method"] == "POST"
    assert result["data"]["content_type"] == "application/x-www-form-urlencoded"
    assert result["data"]["body"] == "a=1&b=two"
    assert result["data"]["x_test"] == "yes"
    assert {"headers", "url", "elapsed_ms"} <= set(result)


def test_http_params_are_rendered_into_the_query_string(runs: Batch) -> None:
    run = runs["http"]
    completed(run)
    assert run.step("get")["result"]["data"]["query"] == {"q": "x y", "n": "2"}


def test_an_http_payload_on_a_get_becomes_the_query_string(runs: Batch) -> None:
    run = runs["http"]
    completed(run)
    assert run.step("get_payload")["result"]["data"]["query"] == {"q": "z"}


def test_an_http_json_body_is_sent_as_json(runs: Batch) -> None:
    run = runs["http"]
    completed(run)
    data = run.step("put")["result"]["data"]
    assert (data["method"], data["content_type"]) == ("PUT", "application/json")
    assert json.loads(data["body"]) == {"items": [1, 2]}


def test_a_result_handle_falls_back_to_result_data_for_keys_it_lacks(runs: Batch) -> None:
    run = runs["http_handle"]
    completed(run)
    assert run.step("read")["result"] == [200, "GET", "ann", "ann"]


def test_tool_level_retry_on_status_retries_http_503_until_it_succeeds(runs: Batch) -> None:
    run = runs["http_retry_on_status"]
    completed(run)
    call = run.step("call")
    assert call["result"]["data"] == {"ok": True, "calls": 3}
    assert call["attempts"] == 3
    failures = of_type(run.log, "task.attempt.failed", "call")
    assert [e["result"]["error"]["code"] for e in failures] == ["HTTP_503", "HTTP_503"]
    assert [e["result"]["error"]["status"] for e in failures] == [503, 503]


def test_an_http_404_is_a_non_retryable_not_found_error_with_its_code(runs: Batch) -> None:
    error = branch_error(runs["http"], "e404")
    assert (error["kind"], error["code"], error["retryable"]) == ("not_found", "HTTP_404", False)
    assert (error["http_status"], error["status"], error["source"]) == (404, 404, "http")


def test_an_http_429_is_a_retryable_rate_limit(runs: Batch) -> None:
    error = branch_error(runs["http"], "e429")
    assert (error["kind"], error["retryable"], error["http_status"]) == ("rate_limit", True, 429)


def test_an_http_503_is_a_retryable_server_error(runs: Batch) -> None:
    error = branch_error(runs["http"], "e503")
    assert (error["kind"], error["code"], error["retryable"]) == ("server_error", "HTTP_503", True)


def test_an_http_connection_refused_is_a_retryable_connection_error(runs: Batch) -> None:
    error = branch_error(runs["http"], "refused")
    assert (error["kind"], error["retryable"]) == ("connection", True)


def test_tool_credential_is_an_alias_of_auth_and_its_token_never_reaches_the_events(
        runs: Batch, http_credential: str | None) -> None:
    assert http_credential is not None, "`noetl credential set` could not store the credential"
    run = runs["credential_alias"]
    completed(run)
    assert run.step("call")["result"]["status_code"] == 200
    assert SECRET_TOKEN not in json.dumps(run.doc)
    assert SECRET_TOKEN not in json.dumps(run.log)
    assert run.step("call")["result"]["data"]["authorization"] is not None  # the header was sent


# ---------------------------------------------------------------------- other keys
def test_tool_level_retry_is_an_error_retry_rule(runs: Batch) -> None:
    run = runs["tool_keys"]
    completed(run)
    assert run.step("flaky")["result"] == 3
    assert run.step("flaky")["attempts"] == 3


def test_cond_is_an_alias_of_when(runs: Batch) -> None:
    run = runs["cond_alias"]
    completed(run)
    assert run.step("b")["result"] == "b"
    assert not run.ran("a")


def test_tool_configuration_nested_under_its_spec_is_merged_into_the_tool(runs: Batch) -> None:
    run = runs["tool_keys"]
    completed(run)
    assert run.step("nested")["result"] == 42


def test_admit_rules_that_do_not_allow_a_step_skip_it(runs: Batch) -> None:
    run = runs["admit"]
    completed(run)
    assert run.step("gated")["status"] == "skipped"
    assert of_type(run.log, "step.skipped", "gated")
    assert not of_type(run.log, "step.started", "gated")
    assert not run.ran("after_gated")
    assert run.step("open")["result"] == "open"


def test_python_libs_as_a_list_imports_each_module_under_its_own_name(runs: Batch) -> None:
    run = runs["tool_keys"]
    completed(run)
    assert run.step("calc")["result"] == "[2]"


def test_informational_keys_and_hints_are_accepted_and_the_playbook_runs(runs: Batch) -> None:
    run = runs["accepted_hints"]
    completed(run)
    assert run.step("start")["result"] == [{"result": 1}, {"result": 1}]
    assert not run.ran("never")


def test_output_select_keeps_the_listed_fields_inline_and_the_rest_by_reference(runs: Batch) -> None:
    run = runs["output_select"]
    completed(run)
    assert run.step("read")["result"] == {"rows": [1, 2, 3], "summary": {"rows": 3}}
    [outcome] = of_type(run.log, "step.succeeded", "big")
    assert outcome["result"]["data"] == {"summary": {"rows": 3}}
    assert outcome["result"]["ref"] is not None


def test_the_same_key_in_a_tool_and_its_spec_is_refused_before_running(
        noetl: Noetl, playbook: Callable[..., str]) -> None:
    text = playbook("""\
        workflow:
          - step: both
            tool: {kind: python, code: "result = 1", spec: {code: "result = 2"}}
        """)
    result = noetl("run", str(noetl.write(text)), "--json")
    assert result.returncode == 2, result
    assert "both in the tool and in its spec" in result.stderr


def test_a_cursor_loop_that_also_has_in_and_unsupported_tool_kinds_are_refused_with_a_message(
        noetl: Noetl, playbook: Callable[..., str]) -> None:
    cursor = noetl.write(playbook("""\
        workflow:
          - step: page
            loop: {in: [1], iterator: i, cursor: {kind: postgres, auth: pg, claim: "SELECT 1 AS id"}}
            tool: {kind: noop}
        """, "cursor"))
    transfer = noetl.write(playbook("""\
        workflow:
          - step: copy
            tool: {kind: transfer, source: x}
        """, "transfer"))
    result = noetl("validate", str(cursor), str(transfer))
    assert result.returncode == 1
    assert "a cursor loop claims its rows with 'cursor.claim' and takes no 'in'" in result.stderr
    assert "unknown tool kind 'transfer'" in result.stderr and "python" in result.stderr
