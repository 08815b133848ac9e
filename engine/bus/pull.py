"""Pull credit kept at the server: how a Consumer receives its messages without a round trip per fetch.

nats-py's `fetch` sends a no-wait pull, waits for the server's "no messages", then sends a waiting pull,
on every call: three messages and a round trip before a message can flow, each time a consumer waits.
A `PullFeed` instead keeps pull requests (credit for up to `batch` messages, each expiring after
`EXPIRES_S`) standing at the server, on one inbox of its own; messages land in a local buffer as soon
as the stream has them, and a fetch usually only takes from that buffer. The credit is topped up when
half of it is used, never beyond what the caller asked for, so a worker never holds more commands than
it has free slots (running + buffered + requested <= the batch it asked for).

The server ends each request with a 408 (expired) or 409 (e.g. the consumer was deleted) status that
names the messages it left unsent; a request whose end went missing (a reconnect) is forgotten after
its expiry, so the credit heals itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

logger = logging.getLogger(__name__)

EXPIRES_S = 5.0  # a standing pull request lives this long at the server
_GRACE_S = 1.0  # ... and is forgotten here this long after, should its end never arrive
_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"


class PullFeed:
    """Standing pull requests on one durable consumer, and the messages they brought. One reader."""

    def __init__(self, nc: Client, stream: str, durable: str, arrived: asyncio.Event | None = None) -> None:
        self._nc = nc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: deque[Msg] = deque()
        # shared with another source when a reader merges them (engine.bus.jetstream.EventReader)
        self._arrived = arrived if arrived is not None else asyncio.Event()
        self._requests: deque[list[float]] = deque()  # [expires at (monotonic), messages still owed]
        self._waiter: asyncio.Future[None] | None = None  # a take waiting for the first message

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    @property
    def owed(self) -> int:
        return int(sum(owed for _, owed in self._requests))

    async def take(self, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` messages; waits at most `timeout` seconds for the first one."""
        if self._sub is None:
            raise RuntimeError("the pull feed is closed")
        self._forget_expired()
        have = len(self._buffer) + self.owed
        if have <= batch // 2:
            await self._request(batch - have)
        if not self._buffer and timeout > 0:
            # a future the next message resolves (not wait_for on the event: a task and two more turns
            # of the event loop between a message's arrival and its taker)
            self._arrived.clear()
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        taken = [self._buffer.popleft() for _ in range(min(batch, len(self._buffer)))]
        return taken

    async def _request(self, count: int) -> None:
        if count <= 0:
            return
        body = json.dumps({"batch": count, "expires": int(EXPIRES_S * 1e9)}).encode()
        self._requests.append([time.monotonic() + EXPIRES_S + _GRACE_S, float(count)])
        await self._nc.publish(self._api, body, reply=self._inbox)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        while self._requests and self._requests[0][0] < now:
            self._requests.popleft()

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            self._buffer.append(msg)
            for request in self._requests:  # the server serves its waiting requests in order
                if request[1] > 0:
                    request[1] -= 1
                    if request[1] == 0:
                        self._requests.remove(request)
                    break
            self._arrived.set()
            _wake(self._waiter)
            return
        if status == "100":  # idle heartbeat / flow control: nothing owed changes
            return
        # 408 request expired, 409 ended by the server, 404 nothing for a no-wait: that request is done
        try:
            unsent = int(msg.headers.get(_PENDING, "-1")) if msg.headers else -1
        except ValueError:
            unsent = -1
        for request in self._requests:
            if unsent < 0 or request[1] == unsent:
                self._requests.remove(request)
                break
        if status == "409":
            logger.debug("a pull request on %s ended: %s", self._api,
                         (msg.headers or {}).get("Description", ""))


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
