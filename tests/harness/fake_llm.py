"""A small OpenAI-compatible chat-completions server in a thread, answering from a script.

    with FakeLlm(["{\"summary\": ...}", FakeLlm.status(500), "not json"]) as llm:
        settings = LlmSettings(model="fake", base_url=llm.url, api_key="k")
        ...
        llm.requests  # every request: {"path", "headers" (names lower-cased), "body" (parsed), "raw"}

Each POST /v1/chat/completions takes the next scripted reply: a string is the assistant's message
content; `FakeLlm.status(code)` answers that HTTP status with an OpenAI-style error body. When the script
runs out, the last reply repeats.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Status:
    code: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        owner = self.server.owner
        with owner.lock:
            owner.requests.append({"path": self.path, "body": body,
                                   "headers": {k.lower(): v for k, v in self.headers.items()},
                                   "raw": raw})
            reply = owner.next_reply()
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        if isinstance(reply, Status):
            self._json(reply.code, {"error": {"message": f"scripted status {reply.code}",
                                              "type": "server_error", "code": reply.code}})
            return
        model = body.get("model") if isinstance(body, dict) else "fake"
        self._json(200, {
            "id": f"chatcmpl-{len(owner.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": model or "fake",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeLlm


class FakeLlm:
    """The server; use as a context manager. `url` is the base URL (ends with /v1)."""

    status = Status

    def __init__(self, script: Sequence[str | Status]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-llm", daemon=True)

    def next_reply(self) -> str | Status:
        if not self.script:
            return Status(500)
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeLlm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def recorded_text(self) -> str:
        """Everything the server received, headers and bodies, as one string (for leak checks)."""
        with self.lock:
            return "\n".join(json.dumps(r["headers"]) + "\n" + r["raw"] for r in self.requests)


@pytest.fixture
def fake_llm() -> Iterator[type[FakeLlm]]:
    """The FakeLlm class (start one per test with the script it needs)."""
    yield FakeLlm
