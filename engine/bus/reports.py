"""Workers' reports to the orchestrator: core NATS requests, answered once their events are stored.

A step's outcome travels to the orchestrator once, as a core NATS request on the report subject (not a
JetStream message: one stored hop per step, the command's). The orchestrator answers only after the
events are committed to Postgres, so the answer is the proof the worker waits for before it acks its
command; until then the worker keeps the outcome and sends it again (to whichever orchestrator leads
then). Answers:

- `ok`: stored (or already stored before: the log keeps each idempotency key once);
- `drop`: not to be stored, and not to be sent again (a malformed message, an ended execution's late
  report);
- `retry:<seconds>`: send it again after that long (the command is not issued yet: its cause is being
  taken again from the log; or storing failed);
- `absent`: no orchestrator listens now (NATS' "no responders"): send it again after a backoff.

The orchestrator's side is a queue subscription (one member of the queue group gets each request), its
reports read like JetStream deliveries (engine.runtime.ports.Message: acking answers `ok`), merged with
the event stream's messages by `EventReader` (engine/bus/jetstream.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

logger = logging.getLogger(__name__)

OK, DROP, ABSENT = "ok", "drop", "absent"
RETRY = "retry:"
QUEUE = "orchestrators"  # the queue group: one orchestrator answers each report
ATTEMPT_HEADER = "Noetl-Attempt"
CLOSED_RETRY_S = 0.25  # a report left unread by an orchestrator that stops: sent again after this


def retry_answer(delay_s: float) -> str:
    return f"{RETRY}{delay_s:g}"


def retry_delay(answer: str) -> float | None:
    """The delay a `retry:` answer asks for; None for any other answer."""
    if not answer.startswith(RETRY):
        return None
    try:
        return max(0.0, float(answer[len(RETRY):]))
    except ValueError:
        return 0.0


class ReportLine:
    """A worker's reports and their answers: one inbox subscription; `send` publishes at once (reports
    leave in the order of the calls) and returns a future of the answer."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._tokens = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._starting: asyncio.Lock = asyncio.Lock()

    async def send(self, subject: str, data: bytes, attempt: int = 1) -> asyncio.Future[str]:
        if self._sub is None:
            async with self._starting:
                if self._sub is None:
                    self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_answer)
        token = str(next(self._tokens))
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[token] = answer
        answer.add_done_callback(lambda _: self._waiting.pop(token, None))  # answered, timed out, cancelled
        try:
            await self._nc.publish(subject, data, reply=f"{self._inbox}.{token}",
                                   headers={ATTEMPT_HEADER: str(attempt)})
        except BaseException:
            answer.cancel()
            raise
        return answer

    async def _on_answer(self, msg: Msg) -> None:
        answer = self._waiting.get(msg.subject.rsplit(".", 1)[-1])
        if answer is None or answer.done():
            return  # answered after the sender gave up waiting: it sent the report again
        status = msg.headers.get("Status") if msg.headers else None
        answer.set_result(ABSENT if status == "503" else msg.data.decode(errors="replace"))

    async def close(self) -> None:
        for answer in list(self._waiting.values()):
            answer.cancel()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()


class Report:
    """One report as the orchestrator reads it (engine.runtime.ports.Message): settling it answers."""

    __slots__ = ("_answered", "_msg", "_nc")

    def __init__(self, nc: Client, msg: Msg) -> None:
        self._nc = nc
        self._msg = msg
        self._answered = False

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def num_delivered(self) -> int:
        """The worker's attempt: 1 the first time it sent the report, 2 the next, ..."""
        try:
            return max(1, int((self._msg.headers or {}).get(ATTEMPT_HEADER, "1")))
        except ValueError:
            return 1

    async def _answer(self, answer: str) -> None:
        if self._answered or not self._msg.reply:
            return
        self._answered = True
        await self._nc.publish(self._msg.reply, answer.encode())

    async def ack_nowait(self) -> None:
        await self._answer(OK)

    async def nak(self, delay_s: float | None = None) -> None:
        await self._answer(retry_answer(delay_s or 0.0))

    async def in_progress(self) -> None:
        return None  # the worker waits as long as it takes

    async def term(self) -> None:
        await self._answer(DROP)


class ReportInbox:
    """The orchestrator's side: reports as they arrive, buffered until taken; `arrived` is set on each."""

    def __init__(self, nc: Client, subject: str, arrived: asyncio.Event) -> None:
        self._nc = nc
        self._subject = subject
        self._arrived = arrived
        self._buffer: deque[Report] = deque()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._subject, queue=QUEUE, cb=self._on_report)

    async def _on_report(self, msg: Msg) -> None:
        self._buffer.append(Report(self._nc, msg))
        self._arrived.set()

    @property
    def waiting(self) -> int:
        return len(self._buffer)

    def take(self, batch: int) -> list[Report]:
        return [self._buffer.popleft() for _ in range(min(batch, len(self._buffer)))]

    async def close(self) -> None:
        """Stop taking reports: those not taken yet are answered `retry` (another orchestrator may take
        them at once); those taken and not answered are sent again when their workers stop waiting."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        while self._buffer:
            with contextlib.suppress(Exception):
                await self._buffer.popleft().nak(CLOSED_RETRY_S)
