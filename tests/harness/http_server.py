"""A request handler served on a free 127.0.0.1 port in a thread, for tests that need a local HTTP API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """The base URL of `handler` served until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reply_json(handler: BaseHTTPRequestHandler, status: int, value: Any,
               headers: Mapping[str, str] | None = None) -> None:
    """Answer `value` as JSON with `status` (and any extra headers) from a request handler."""
    body = json.dumps(value).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, header in (headers or {}).items():
        handler.send_header(name, header)
    handler.end_headers()
    handler.wfile.write(body)
