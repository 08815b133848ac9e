"""Fixtures for the tool tests: a python pool, an in-memory credential store, a real local HTTP server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.tools.base import Credential, MissingCredentialError, ToolCall
from engine.tools.python_pool import PythonPool
from tests.harness.http_server import serving

TEST_MEMORY_LIMIT = 384 * 1024 * 1024


@pytest.fixture
async def pool() -> AsyncIterator[PythonPool]:
    async with PythonPool(2, memory_limit_bytes=TEST_MEMORY_LIMIT) as started:
        yield started


class StoredCredentials:
    """A credential resolver over a dict: the same contract as the control plane's store."""

    def __init__(self, items: Mapping[str, tuple[str, Mapping[str, Any]]]) -> None:
        self.items = dict(items)

    async def get(self, name: str) -> Credential:
        if name not in self.items:
            raise MissingCredentialError(name)
        kind, data = self.items[name]
        return Credential(name=name, type=kind, data=data)


def make_call(kind: str, config: Mapping[str, Any] | None = None, **fields: Any) -> ToolCall:
    return ToolCall(kind=kind, config=dict(config or {}), **fields)


def free_port() -> int:
    """A TCP port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _send(self, status: int, body: bytes, ctype: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), "application/json", headers)

    def _route(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/echo":
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            self._json(200, {"method": self.command, "path": parts.path, "query": query,
                             "headers": {k.lower(): v for k, v in self.headers.items()},
                             "body": body, "json": parsed})
        elif parts.path.startswith("/status/"):
            status = int(parts.path.rsplit("/", 1)[1])
            extra = {"Retry-After": "1"} if status == 429 else None
            self._json(status, {"error": f"status {status}"}, extra)
        elif parts.path == "/text":
            self._send(200, b"hello there", "text/plain; charset=utf-8")
        elif parts.path == "/binary":
            self._send(200, bytes([0, 255, 1, 254]), "application/octet-stream")
        elif parts.path == "/slow":
            time.sleep(float(query.get("s", "2")))
            self._json(200, {"slow": True})
        elif parts.path == "/redirect":
            self._send(302, b"", "text/plain", {"Location": "/echo?from=redirect"})
        elif parts.path == "/secure":
            if self.headers.get("Authorization") == "Bearer tok-123456":
                self._json(200, {"ok": True, "seen": self.headers.get("Authorization")})
            else:
                self._json(401, {"error": "who are you"})
        else:
            self._json(404, {"error": "no route"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _route


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    with serving(_Handler) as url:
        yield url
