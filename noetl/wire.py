"""A minimal HTTP/1.1 client over one keep-alive socket, for noetl.fastrun: http.client costs its
importer ~25 ms (email.parser, ssl), a third of the fast path's budget. Plain http on a local API only."""

from __future__ import annotations

import json
import socket

TYPE_CHECKING = False  # not typing's: noetl.fastrun imports this module on its hot path
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

MAX_HEADER_BYTES = 64 * 1024  # a response head longer than this is not the API's


class WireError(Exception):
    """The server answered something this client does not read, or the connection ended early."""


class Connection:
    """Requests one after another on one connection (opened again when the server closed it)."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._reader: Any = None  # the socket's buffered reader
        self._headers: dict[str, str] = {}
        self._closing = False

    def settimeout(self, seconds: float) -> None:
        if self._sock is not None:
            self._sock.settimeout(seconds)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if sock is not None:
            sock.close()

    def request(self, method: str, target: str, headers: dict[str, str],
                body: bytes | None = None) -> tuple[int, dict[str, str]]:
        """Send a request; the status and headers (lower-case names) of its answer. Read the body
        next with `body()` or `lines()`, before the next request."""
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._reader = self._sock.makefile("rb")
        self._sock.settimeout(self.timeout_s)
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                *(f"{name}: {value}" for name, value in headers.items())]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        self._sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return self._head()

    def _head(self) -> tuple[int, dict[str, str]]:
        status_line = self._reader.readline(MAX_HEADER_BYTES)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise WireError(f"not an HTTP/1.1 answer: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        size = len(status_line)
        while True:
            line = self._reader.readline(MAX_HEADER_BYTES)
            size += len(line)
            if not line or size > MAX_HEADER_BYTES:
                raise WireError("the answer's head ended early or is too long")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self._closing = headers.get("connection", "").lower() == "close"
        self._headers = headers
        return int(parts[1]), headers

    def _chunks(self) -> Iterator[bytes]:
        """The body's bytes as they arrive (chunked, or by Content-Length)."""
        headers = self._headers
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._reader.readline(MAX_HEADER_BYTES)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise WireError(f"a bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    while self._reader.readline(MAX_HEADER_BYTES) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                data = self._reader.read(size + 2)
                if len(data) < size + 2:
                    raise WireError("the connection ended inside a chunk")
                yield data[:size]
        elif "content-length" in headers:
            length = int(headers["content-length"])
            data = self._reader.read(length) if length else b""
            if len(data) < length:
                raise WireError("the connection ended inside the body")
            if data:
                yield data
        else:  # until the server closes the connection
            self._closing = True
            while data := self._reader.read1(65536):
                yield data
        if self._closing:
            self.close()

    def body(self) -> bytes:
        return b"".join(self._chunks())

    def json(self) -> Any:
        raw = self.body()
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise WireError(f"an answer that is not JSON: {raw[:80]!r}") from None

    def lines(self) -> Iterator[bytes]:
        """The body's lines (without their line ends) as they arrive; the last one ends the body."""
        pending = b""
        for data in self._chunks():
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r")
        if pending:
            yield pending.rstrip(b"\r")
