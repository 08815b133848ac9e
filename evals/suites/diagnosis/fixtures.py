"""Real failure sources for the diagnosis suite: a local HTTP server in a thread, and a closed port.

HTTP paths (all on 127.0.0.1):
  /status/NNN      answers NNN with a small JSON body (429 also sends Retry-After: 1)
  /slow/SECONDS    answers 200 after sleeping SECONDS
  /items           {"items": [{"id": 1, "amount": 5}, {"id": 2, "amount": 7}]}
  /empty           {"items": []}
  /text            text/plain, not JSON
  /flaky/NAME      500 on the 1st, 3rd, 5th... request for NAME, 200 on the others
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: FixtureServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: Any, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server's name
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        head = parts[0] if parts else ""
        if head == "status" and len(parts) > 1 and parts[1].isdigit():
            code = int(parts[1])
            extra = {"Retry-After": "1"} if code == 429 else None
            self._send(code, {"error": f"status {code}", "path": self.path}, headers=extra)
        elif head == "slow" and len(parts) > 1:
            time.sleep(float(parts[1]))
            self._send(200, {"slept": float(parts[1])})
        elif head == "items":
            self._send(200, {"items": [{"id": 1, "amount": 5}, {"id": 2, "amount": 7}]})
        elif head == "empty":
            self._send(200, {"items": []})
        elif head == "text":
            self._send(200, "maintenance: the service is read-only today", "text/plain")
        elif head == "flaky" and len(parts) > 1:
            with self.server.lock:
                self.server.calls[parts[1]] += 1
                count = self.server.calls[parts[1]]
            if count % 2:
                self._send(500, {"error": "internal error", "call": count})
            else:
                self._send(200, {"ok": True, "call": count})
        else:
            self._send(404, {"error": "no such path", "path": self.path})

    do_POST = do_GET


class FixtureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, name="diagnosis-fixtures", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FixtureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
