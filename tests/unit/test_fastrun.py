"""noetl.fastrun's pure parts (which invocations it takes, the summary and warning lines it prints) and
noetl.wire's HTTP/1.1 reading, against a socket that answers canned bytes."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.dsl.diagnostics import Diagnostic
from engine.protocol.ids import os_random_bits
from noetl import fastrun
from noetl.wire import Connection, WireError


def test_a_plain_run_with_json_payload_and_timeout_is_taken_in_any_order() -> None:
    taken = fastrun.parse_args(["run", "--timeout=2.5", "--payload", '{"x": 1}', "p.yaml", "--json",
                                "--merge"])
    assert taken is not None
    assert (taken.file, taken.payload, taken.as_json, taken.timeout) == (Path("p.yaml"), {"x": 1}, True, 2.5)
    bare = fastrun.parse_args(["run", "p.yaml"])
    assert bare is not None and (bare.payload, bare.as_json, bare.timeout) == ({}, False, None)


@pytest.mark.parametrize("args", [
    ["run"], ["status", "x"], ["run", "a.yaml", "b.yaml"], ["run", "a.yaml", "--help"],
    ["run", "a.yaml", "--verbose"], ["run", "--", "a.yaml"], ["run", "-", "--json"],
    ["run", "a.yaml", "--payload", "[1]"], ["run", "a.yaml", "--payload", "{not json"],
    ["run", "a.yaml", "--timeout", "soon"], ["run", "a.yaml", "--timeout", "nan"],
    ["run", "a.yaml", "--payload"],
])
def test_anything_else_is_left_to_the_full_path_which_says_what_is_wrong(args: list[str]) -> None:
    assert fastrun.parse_args(args) is None


def test_the_summary_has_the_full_paths_keys_in_order_and_stats_only_when_a_step_has_some() -> None:
    detail = {"execution_id": "1", "path": "p", "status": "completed", "result": [1], "error": None,
              "trace_id": "0af7651916cd43dd8448eb211c80319c", "last_seq": 9, "steps": {
                  "a": {"status": "succeeded", "result": 1, "error": None, "attempts": 1, "stats": None},
                  "b": {"status": "succeeded", "result": [1], "error": None, "attempts": 2,
                        "stats": {"total": 1}}}}
    summary = fastrun.summary_of("2241043291894150228", detail)
    assert list(summary) == ["execution_id", "trace_id", "status", "result", "error", "steps"]
    assert summary["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert summary["execution_id"] == "2241043291894150228"
    assert summary["steps"] == {"a": {"status": "succeeded", "result": 1, "error": None, "attempts": 1},
                                "b": {"status": "succeeded", "result": [1], "error": None, "attempts": 2,
                                      "stats": {"total": 1}}}


def test_a_registration_warning_prints_as_the_engines_diagnostic_does() -> None:
    diagnostic = Diagnostic("p.yaml", 7, 11, "workflow[1].step", "step 'nap' is unreachable", "unreachable",
                            "warning")
    item = {"line": 7, "column": 11, "code": "unreachable", "path": "workflow[1].step",
            "message": "step 'nap' is unreachable"}
    assert fastrun.warning_lines([item], "p.yaml") == [diagnostic.format()]


def test_an_event_streams_data_lines_are_its_json_and_a_comment_is_a_keep_alive() -> None:
    assert fastrun.sse_data([b"id: 3", b"event: step.started", b'data: {"seq": 3}']) == {"seq": 3}
    assert fastrun.sse_data([b": keepalive"]) is None


def test_a_streamed_event_gives_progress_what_it_reads() -> None:
    event = fastrun.StreamedEvent({"type": "loop.started", "step": "s", "attempt": 2, "loop_index": None,
                                   "payload": None, "seq": 4})
    assert (event.type, event.step, event.attempt, event.loop_index, event.payload) == (
        "loop.started", "s", 2, None, {})


def test_the_off_switch_and_a_home_without_a_dev_stack_decline(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    playbook = tmp_path / "p.yaml"
    playbook.write_text("kind: Playbook\n")
    monkeypatch.setenv("NOETL_HOME", str(tmp_path))
    monkeypatch.setenv("NOETL_FAST_RUN", "0")
    assert fastrun.attempt(["run", str(playbook)]) is None
    monkeypatch.delenv("NOETL_FAST_RUN")
    assert fastrun.attempt(["run", str(playbook)]) is None


@pytest.mark.parametrize("name", fastrun.FULL_PATH_SETTINGS)
def test_a_setting_the_full_path_checks_leaves_the_run_to_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             name: str) -> None:
    def unreachable(home: Path) -> None:
        raise AssertionError("the dev stack was looked for")

    monkeypatch.setattr(fastrun, "dev_api", unreachable)
    monkeypatch.delenv("NOETL_FAST_RUN", raising=False)
    monkeypatch.setenv(name, "not a valid value")
    assert fastrun.attempt(["run", str(tmp_path / "p.yaml")]) is None


def test_the_dev_api_needs_a_live_serving_process_an_api_url_and_the_command_line_token(
        tmp_path: Path) -> None:
    state = {"pid": os.getpid(), "ready": True, "api_url": "http://127.0.0.1:8082"}
    (tmp_path / "dev.json").write_text(json.dumps(state))
    assert fastrun.dev_api(tmp_path) is None  # no token
    (tmp_path / "dev-cli-token").write_text("noetl_abc\n")
    found = fastrun.dev_api(tmp_path)
    assert found is not None and (found.host, found.port, found.token) == ("127.0.0.1", 8082, "noetl_abc")
    (tmp_path / "dev.json").write_text(json.dumps({**state, "api_url": "https://example.com"}))
    assert fastrun.dev_api(tmp_path) is None


def test_the_random_bits_of_an_id_stay_within_their_width() -> None:
    drawn = [os_random_bits(22) for _ in range(2000)]
    assert all(0 <= bits < 2**22 for bits in drawn) and len(set(drawn)) > 1900


# ---------------------------------------------------------------------- noetl.wire
class Canned:
    """A server on a free port that answers the requests of one connection with `answers`, in turn,
    and keeps the requests it read."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.answers: list[bytes] = []
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def start(self, *answers: bytes) -> None:
        self.answers.extend(answers)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rb") as reader:
            while self.answers:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + reader.read(length))
                conn.sendall(self.answers.pop(0))

    def close(self) -> None:
        self.server.close()
        if self.thread.is_alive():
            self.thread.join(timeout=5)


@pytest.fixture
def canned() -> Iterator[Canned]:
    server = Canned()
    yield server
    server.close()


def test_the_wire_reads_a_sized_answer_then_a_chunked_stream_on_one_connection(canned: Canned) -> None:
    canned.start(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n"
                 b'{"a": 1}',
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"7\r\nid: 1\ne\r\n8\r\nvent: x\n\r\n3\r\nda:\r\n0\r\n\r\n")
    conn = Connection("127.0.0.1", canned.port, 5.0)
    try:
        assert conn.request("POST", "/r", {"X-A": "1"}, b"yaml") == (201, {
            "content-type": "application/json", "content-length": "8"})
        assert conn.json() == {"a": 1}
        status, headers = conn.request("GET", "/s", {})
        assert (status, headers["transfer-encoding"]) == (200, "chunked")
        assert list(conn.lines()) == [b"id: 1", b"event: x", b"da:"]
    finally:
        conn.close()
    assert canned.requests[0].startswith(b"POST /r HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"X-A: 1\r\n" in canned.requests[0] and b"Content-Length: 4\r\n" in canned.requests[0]
    assert canned.requests[0].endswith(b"\r\n\r\nyaml")
    assert canned.requests[1].startswith(b"GET /s HTTP/1.1\r\n")


def test_an_answer_that_is_not_http_is_a_wire_error(canned: Canned) -> None:
    canned.start(b"SSH-2.0-OpenSSH\r\n\r\n")
    conn = Connection("127.0.0.1", canned.port, 5.0)
    try:
        with pytest.raises(WireError, match="not an HTTP/1.1 answer"):
            conn.request("GET", "/", {})
    finally:
        conn.close()
