"""The trigger runner in every server process: looks at the triggers each tick and reads the subjects.

Every server process runs one; they decide the same firings under the same ids, and the trigger's row
lock and the firing's primary key leave each firing to whoever records it first (docs/triggers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from control_plane.errors import ControlPlaneError
from control_plane.services.triggers import TriggerService
from control_plane.store.triggers import TriggerRecord
from control_plane.triggers import definition
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.bus.jetstream import Bus, Consumer

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often the triggers are looked at (a firing starts within a tick of being due)
RECOVER_EVERY_S = 5.0
FETCH_TIMEOUT_S = 1.0
RETRY_DELAY_S = 1.0


class TriggerRunner:
    def __init__(self, service: TriggerService, bus: Bus | None = None, *, tick_s: float = TICK_S) -> None:
        self.service = service
        self.bus = bus
        self.tick_s = tick_s
        self._readers: dict[str, tuple[str, asyncio.Task[None]]] = {}  # trigger id -> (subject, task)
        self._complained: dict[str, str] = {}  # trigger id -> the last error logged for it
        self._recovered_at = 0.0

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        ready.set()
        log.info("the trigger runner is running (a look every %.1f s)", self.tick_s)
        try:
            while not stop.is_set():
                try:
                    await self.tick(datetime.now(UTC), stop)
                except (ControlPlaneError, EngineError, OSError) as exc:
                    log.warning("triggers: a look failed (%s); trying again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_s)
        finally:
            for _, task in self._readers.values():
                task.cancel()
            for _, task in self._readers.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._readers.clear()

    async def tick(self, now: datetime, stop: asyncio.Event | None = None) -> None:
        """One look: time triggers and `after` triggers decided, subject readers matched to the triggers,
        queued firings started when their turn came, and firings a crash left pending started again."""
        active = await self.service.store.triggers.list(active=True)
        for trigger in active:
            try:
                if trigger.kind in ("cron", "interval"):
                    due = definition.next_due(trigger.kind, trigger.spec, trigger.created_at,
                                              trigger.trigger_id, trigger.cursor_at)
                    if due is not None and due > now:  # nothing due: no lock taken, no query made
                        continue
                    await self.service.tick_schedule(trigger.trigger_id, now)
                elif trigger.kind == "after":
                    await self.service.tick_after(trigger)
                else:
                    continue
                self._complained.pop(trigger.trigger_id, None)
            except (ControlPlaneError, EngineError, ValueError) as exc:
                self._complain(trigger, exc)
        self._sync_readers([t for t in active if t.kind == "subject"], stop)
        await self.service.promote_queued()
        if time.monotonic() - self._recovered_at >= RECOVER_EVERY_S:
            self._recovered_at = time.monotonic()
            await self.service.recover()

    def _complain(self, trigger: TriggerRecord, exc: Exception) -> None:
        text = str(exc)
        if self._complained.get(trigger.trigger_id) != text:  # once per error, not every tick
            self._complained[trigger.trigger_id] = text
            log.warning("trigger %s (%s of %s) cannot fire: %s", trigger.trigger_id, trigger.kind,
                        trigger.path,
                        text)

    def _sync_readers(self, triggers: list[TriggerRecord], stop: asyncio.Event | None) -> None:
        if self.bus is None:
            return
        wanted = {t.trigger_id: t for t in triggers}
        for trigger_id in list(self._readers):
            subject, task = self._readers[trigger_id]
            trigger = wanted.get(trigger_id)
            if trigger is None or trigger.spec.get("subject") != subject or task.done():
                task.cancel()
                del self._readers[trigger_id]
        for trigger_id, trigger in wanted.items():
            if trigger_id not in self._readers:
                task = asyncio.create_task(self._read(trigger), name=f"noetl-trigger-{trigger_id}")
                self._readers[trigger_id] = (str(trigger.spec.get("subject")), task)

    async def _read(self, trigger: TriggerRecord) -> None:
        """Fire the subject trigger for each message, acked once its firing is recorded."""
        assert self.bus is not None
        subject = str(trigger.spec.get("subject"))
        consumer: Consumer | None = None
        try:
            while consumer is None:
                try:
                    listed = await self.service.store.triggers.list(kinds=["subject"])
                    others = [t.spec["subject"] for t in listed if t.trigger_id != trigger.trigger_id]
                    consumer = await self.bus.trigger_consumer(trigger.trigger_id, subject,
                                                               since=trigger.created_at, all_subjects=others)
                except (ControlPlaneError, EngineError) as exc:
                    self._complain(trigger, exc)
                    await asyncio.sleep(RETRY_DELAY_S * 5)
            while True:
                for delivery in await consumer.fetch(batch=16, timeout=FETCH_TIMEOUT_S):
                    try:
                        done = await self.service.on_message(trigger, delivery, consumer.stream)
                    except (ControlPlaneError, EngineError) as exc:
                        self._complain(trigger, exc)
                        done = None
                    if done is None:
                        await delivery.nak(RETRY_DELAY_S)
                    else:
                        await delivery.ack()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next look starts a new reader
            log.warning("trigger %s: the reader of %s stopped (%s); it starts again", trigger.trigger_id,
                        subject, exc)
        finally:
            if consumer is not None:
                await consumer.close()
