"""Pure ASGI middleware: the body size limit, text the store cannot hold in a URL, and the last-resort
500 for an unexpected error (logged, never shown)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.api.problems import BodyTooLargeError, problem, unexpected_response

MAX_BODY_BYTES = 4 * 1024 * 1024
DRAIN_FACTOR = 4  # the rest of a too large body is read (and dropped) up to this many times the limit,
# so that clients which send the whole body before reading the answer see the 413; beyond, the
# connection is closed


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class BodyLimit:
    """413 for a body over the limit: at once when Content-Length says so, else when reading passes it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> BodyTooLargeError:
        return BodyTooLargeError(f"the request body is larger than {self.max_bytes} bytes",
                                 where="body", fix=f"send at most {self.max_bytes // (1024 * 1024)} MiB")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            if int(declared) <= self.max_bytes * DRAIN_FACTOR:
                await self._drain(receive, 0)
            error = self._error()
            response = problem(413, code=error.code, detail=error.message, where=error.where, fix=error.fix,
                               headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await self._drain(receive, received)
                    raise self._error()
            return message

        await self.app(scope, limited, send)

    async def _drain(self, receive: Receive, received: int) -> None:
        while received <= self.max_bytes * DRAIN_FACTOR:
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


class RejectNul:
    """400 for a path or query holding a NUL character: no text column can store one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = bytes(scope.get("raw_path") or scope.get("path", "").encode()) + b"?" + \
                bytes(scope.get("query_string", b""))
            if b"%00" in raw or b"\x00" in raw or "\x00" in scope.get("path", ""):
                response = problem(400, code="invalid_argument",
                                   detail="the URL contains a NUL character (%00)", where="URL",
                                   fix="remove the NUL character from the path and query")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Guard:
    """The outermost net: an error no handler answered becomes a 500 problem (or 503 when Postgres is
    down); its traceback is logged, its text never sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:  # the answer is under way: nothing else can be sent
                raise
            response = unexpected_response(exc, f"{scope.get('method')} {scope.get('path')}")
            await response(scope, receive, send)
