"""The orchestrator: events from the bus and workers' reports -> fire -> commands to worker pools, and
the events -> the Postgres event log.

Each batch of events is folded through `fire`; the admitted commands are published at once while the
batch's events go to the commit pipeline (engine/runtime/commits.py), which appends them in order and
only then acks the bus messages, so an event is taken as happened once it is in the log, never when
JetStream acked it. A command may reach a worker before its cause is durable: an outcome of a command
this orchestrator has not issued (yet) is held back (`_early`). A restarted orchestrator rebuilds each
running execution by replaying its input events and publishes again the commands still pending, and
the cancels of those being cancelled (JetStream and the workers drop copies they already have). While
NATS or Postgres is away, publishing and rebuilding are retried with a backoff (docs/reliability.md).
Playbook calls (child executions, their ends and deadlines) are in engine/runtime/children.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from engine.bus.jetstream import BusError
from engine.dsl.overlay import apply_overlays
from engine.dsl.templates import TemplateRenderer
from engine.errors import EngineError
from engine.net.compile import compile_net
from engine.net.fire import FireEnv, fire
from engine.net.net import Net
from engine.net.state import ExecutionState
from engine.net.validate import validate_text
from engine.plan.demands import Demand, step_demand
from engine.plan.pools import PoolSet
from engine.protocol import subjects
from engine.protocol.commands import CancelStep, RunStep, StartChild, encode_runs
from engine.protocol.events import (
    INPUT_EVENTS,
    TERMINAL_EVENTS,
    Event,
    EventType,
    decode_events,
    derived_id,
    ends_command,
)
from engine.protocol.outcomes import event_key, outcome_event
from engine.protocol.packing import pack
from engine.protocol.partitions import ALL_PARTITIONS, partition_of
from engine.protocol.results import ResultEnvelope
from engine.protocol.tracecontext import command_traceparent
from engine.protocol.workers import WorkerHeartbeat
from engine.runtime.admission import Admission, Decisions, LiveCapacity, step_priorities
from engine.runtime.children import ChildCalls
from engine.runtime.commits import CommitPipeline, Handled
from engine.runtime.partitions import Fence, plan
from engine.runtime.ports import ChildStarter, EventLog, EventReader, Message, PartitionLeases, RuntimeBus
from engine.runtime.spans import SpanSink
from engine.runtime.traces import TraceRecorder
from engine.tools.artifacts import externalize, json_size

log = logging.getLogger(__name__)


COMMAND_MAX_BYTES = 900 * 1024  # NATS' default max_payload is 1 MiB
CANCEL_RESEND_S = 2.0
HOLD_S = 0.005  # waiting for more events after a batch of only progress events
HOLD_MAX_S = 0.02
WAITING_POLL_S = 0.05  # how often commands waiting for capacity are looked at while no event comes
EARLY_RETRY_S = 0.2  # an outcome of a command not issued yet comes again after this
EARLY_MAX_S = 600.0  # ... until this long: then it is recorded (as a stale report)
RECONNECT_POLL_S = 0.25  # after a failed read of the event stream (NATS away), before the next one
REBUILD_BACKOFF_S = 0.25  # a failed rebuild (NATS or Postgres away) is tried again after this, doubling
REBUILD_BACKOFF_MAX_S = 2.0
LEASE_TICK_S = 1.0  # how often the partitions' leases are renewed and the members looked at
LEASE_CALL_TIMEOUT_S = 3.0  # a lease call that takes longer is given up (tried again next tick)
OUTCOMES = frozenset({"step.succeeded", "step.failed", "loop.item.succeeded", "loop.item.failed",
                      "loop.claimer.stopped"})


def _dispatch_event(commands: list[RunStep], type_: EventType,
                    payload: dict[str, Any] | None = None) -> Event:
    """What the orchestrator decided in one admission round about sending commands of one step
    (step.deferred / step.dispatched): one event for all of them, their ids in `payload.commands`, so
    that a loop's items waiting for capacity cost a few events, not two each."""
    first = commands[0]
    ids = [command.command_id for command in commands]
    single = len(commands) == 1
    key = event_key(first.command_id if single else derived_id(*ids), type_.split(".")[1])
    return Event(event_id=uuid.uuid4().hex, idempotency_key=key,
                 execution_id=first.execution_id, type=type_, step=first.step,
                 command_id=first.command_id if single else None, run=first.run,
                 loop_index=first.loop_index if single else None,
                 pool=first.pool, payload={**(payload or {}), "commands": ids})


def dispatch_commands(event: Event) -> list[str]:
    """The command ids a step.deferred / step.dispatched event is about (one per event before 2026-12)."""
    ids = event.payload.get("commands")
    if isinstance(ids, list):
        return [str(command_id) for command_id in ids]
    return [event.command_id] if event.command_id else []


def _progress_only(deliveries: Sequence[Message]) -> bool:
    """Only `step.started` of slow steps (a fast step's start comes with its outcome, in an array)."""
    return all(d.data[:1] != b"[" and b'"type":"step.started"' in d.data for d in deliveries)


def _unavailable(exc: BaseException) -> bool:
    """An error that says a server is away (not a bug): logged without a traceback."""
    return getattr(exc, "code", None) in ("database_unavailable", "bus_error") or isinstance(exc, OSError)


class OrchestratorError(EngineError):
    code = "orchestrator_error"


@dataclass
class _Execution:
    net: Net
    state: ExecutionState
    env: FireEnv
    issued: dict[str, RunStep | StartChild] = field(default_factory=dict)  # replay: pending are re-sent
    started: dict[str, Any] = field(default_factory=dict)  # the execution.started payload
    children: dict[str, str] = field(default_factory=dict)  # command id -> the child execution it started
    known: set[str] = field(default_factory=set)  # every command id issued (run or child start)
    deferred: set[str] = field(default_factory=set)  # replay: commands recorded as waiting for capacity
    routed: dict[str, str] = field(default_factory=dict)  # replay: command id -> the pool it went to
    demands: dict[str, Demand] = field(default_factory=dict)  # step -> what one run of it holds
    priorities: dict[str, float] | None = None  # step -> its remaining critical path (dispatch order)
    cancels: dict[str, CancelStep] = field(default_factory=dict)  # replay: cancels issued, sent again


@dataclass
class _Batch:
    """One batch of events on its way through `Orchestrator.handle`."""

    handled: Handled  # the events to store and the deliveries they came in
    commands: list[tuple[_Execution, RunStep | CancelStep | StartChild]] = field(default_factory=list)
    withdrawn: list[tuple[RunStep, str]] = field(default_factory=list)  # never sent, with the reason
    others: list[tuple[_Execution, CancelStep | StartChild]] = field(default_factory=list)
    terminal: list[Event] = field(default_factory=list)  # execution ends among the events


@dataclass
class Orchestrator:
    bus: RuntimeBus
    events: EventLog
    resolve_ref: Callable[[dict[str, Any]], Any] | None = None
    children: ChildStarter | None = None
    work_dir: Path | None = None  # where results too large for a command are written
    batch_size: int = 256
    ack_wait_s: float = 30.0
    durable: str = "orchestrator"
    pools: PoolSet | None = None  # the deployment's pools file; None: live workers only (docs/runtime.md)
    # None: this orchestrator owns every partition; else its share, by lease (docs/runtime.md "Partitions")
    leases: PartitionLeases | None = None
    tracer: SpanSink | None = None  # where spans go (engine.runtime.tracing); None: no tracing at all
    _live: dict[str, _Execution] = field(default_factory=dict)
    _cancels: dict[str, CancelStep] = field(default_factory=dict)  # sent, command still pending
    _nets: dict[str, Net] = field(default_factory=dict)
    _unstarted: set[str] = field(default_factory=set)  # executions an event came for before their start
    _calls: ChildCalls = field(init=False)
    _renderer: TemplateRenderer = field(default_factory=TemplateRenderer)
    _capacity: LiveCapacity = field(init=False)
    _admission: Admission = field(init=False)
    _commits: CommitPipeline = field(init=False)
    _resync: bool = False  # something was not published: rebuild from the log and publish what pends
    _resync_at: float = 0.0  # ... not before this (loop time): backing off while NATS or Postgres is away
    _resync_backoff: float = 0.0
    _owned: frozenset[int] = ALL_PARTITIONS  # the partitions whose executions this orchestrator runs
    _epochs: dict[int, int] = field(default_factory=dict)  # ... and the epoch of each lease held
    _leases_at: float = 0.0  # loop time of the next look at the leases
    _traces: TraceRecorder | None = None  # the spans of the events handled, when tracing

    def __post_init__(self) -> None:
        self._capacity = LiveCapacity(self.pools)
        if self.tracer is not None:
            self._traces = TraceRecorder(self.tracer)
        self._admission = Admission(self._capacity)
        fence = None
        if self.leases is not None:  # it owns what it takes, once it runs
            self._owned = frozenset()
            fence = partial(self._fence, self.leases.member_id)
        self._commits = CommitPipeline(self.events, fence=fence)
        self._calls = ChildCalls(self._publish_event, self.events, self.children, self.resolve_ref,
                                 self.work_dir)

    # ------------------------------------------------------------------ life cycle
    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await self.bus.ensure_streams()
        # the event stream and the workers' reports (their outcomes, answered once stored: one stored hop
        # per step, the command's; engine/bus/reports.py)
        consumer = await self.bus.event_reader(self.durable, ack_wait_s=self.ack_wait_s,
                                               partitions=self._owned)
        # a server that restarted may have lost commands it had not synced to disk: every pending command
        # is published again from the log (JetStream and the workers drop the copies they already have)
        self.bus.on_reconnect(self._after_reconnect)
        workers = await self.bus.subscribe_core(subjects.worker_subject(self.bus.prefix), self._on_heartbeat)
        with contextlib.suppress(BusError):  # workers already running report now, not in 2 s
            await self.bus.publish_core(subjects.worker_ping_subject(self.bus.prefix), b"{}")
        try:
            await self.resume()
        except Exception as exc:  # NATS or Postgres went away meanwhile: taken again from the log soon
            log.warning("resuming the running executions failed (%s); trying again", exc)
            self._resync = True
        if self.leases is not None:
            await self._sync_leases(consumer)
        if ready is not None:
            ready.set()
        loop = asyncio.get_running_loop()
        held: list[Message] = []
        held_since = 0.0
        resent_at = loop.time()
        while not stop.is_set():
            if self.leases is not None and (loop.time() >= self._leases_at or self._commits.fenced):
                await self._sync_leases(consumer)
            if (self._commits.broken or self._resync) and loop.time() >= self._resync_at:
                await self._rebuild()
            if self._cancels and loop.time() - resent_at > CANCEL_RESEND_S:
                resent_at = loop.time()
                await self._resend_cancels()
            if self._admission.waiting and self._capacity.changed and not held:
                await self._dispatch_waiting()
            idle = WAITING_POLL_S if self._admission.waiting else 0.5
            try:
                deliveries = await consumer.fetch(batch=self.batch_size, timeout=HOLD_S if held else idle)
            except BusError as exc:  # NATS is away: the client reconnects by itself, the log keeps all
                log.warning("reading events failed (%s); trying again", exc)
                await asyncio.sleep(RECONNECT_POLL_S)
                continue
            batch = [*held, *deliveries]
            if not batch:
                continue
            now = loop.time()
            if held and now - held_since < HOLD_MAX_S and (not deliveries or _progress_only(deliveries)):
                held = batch  # a step that just started usually ends within milliseconds: one commit
                continue
            if not held and deliveries and _progress_only(deliveries):
                held, held_since = batch, now
                continue
            held = []
            try:
                await self.handle(batch)
            except Exception:  # keep serving: the batch comes back, the log stays the truth
                log.exception("handling a batch of %d events failed; it will be delivered again",
                              len(batch))
                for delivery in batch:
                    with contextlib.suppress(Exception):
                        await delivery.nak(delay_s=2.0)
                await self._rebuild()
        with contextlib.suppress(Exception):  # unread reports are answered `retry`: another may take them
            await consumer.close()
        await self._commits.close()
        self._calls.close()
        await workers.unsubscribe()
        if self.leases is not None:  # what it decided is stored: another orchestrator may take over now
            with contextlib.suppress(Exception):
                await self.leases.leave()

    # ------------------------------------------------------------------ partitions
    @property
    def partitions(self) -> frozenset[int]:
        """The partitions whose executions this orchestrator runs now."""
        return self._owned

    def _fence(self, member_id: str) -> Fence:
        return Fence(member_id, dict(self._epochs))

    async def _sync_leases(self, reader: EventReader) -> None:
        """Renew the leases; stop running the partitions lost (expired, or taken by another process after
        this one stalled) or wanted by another member (once what was decided for them is stored); take
        those wanted here that nobody owns, and run their executions from the log."""
        leases = self.leases
        assert leases is not None
        loop = asyncio.get_running_loop()
        self._leases_at = loop.time() + LEASE_TICK_S
        self._commits.fenced = False
        try:
            view = await asyncio.wait_for(leases.view(), LEASE_CALL_TIMEOUT_S)
            held = await leases.held()
        except Exception as exc:  # Postgres away: the leases expire unless renewed in time; appends tell
            log.warning("renewing the orchestration leases failed (%r); trying again", exc)
            return
        lost = self._owned - held.keys()
        if lost:
            log.warning("this orchestrator lost partitions %s (another process owns them now)", sorted(lost))
        planned = plan(view)
        given = planned.give & self._owned - lost
        gone = lost | given
        if gone:
            await reader.release(gone)
            if given:
                await self._commits.flush()
                await leases.give(given)
            self._owned -= gone
            for partition in gone:
                self._epochs.pop(partition, None)
            self._resync, self._resync_at = True, 0.0  # its executions are dropped from memory
        self._epochs.update({p: e for p, e in held.items() if p in self._owned})
        if not planned.take:
            return
        try:
            taken = await asyncio.wait_for(leases.take(planned.take), LEASE_CALL_TIMEOUT_S)
        except Exception as exc:
            log.warning("taking orchestration partitions failed (%r); trying again", exc)
            return
        if not taken:
            return
        self._epochs.update(taken)
        self._owned |= taken.keys()
        try:
            await reader.adopt(taken)
            if not self._resync:
                await self.resume(taken.keys())
        except Exception as exc:  # NATS or Postgres away: taken again from the log soon
            log.warning("starting partitions %s failed (%s); trying again", sorted(taken), exc)
            self._resync, self._resync_at = True, 0.0

    def _after_reconnect(self) -> None:
        self._resync, self._resync_at = True, 0.0

    async def _on_heartbeat(self, data: bytes) -> None:
        try:
            self._capacity.heartbeat(WorkerHeartbeat.model_validate_json(data))
        except ValueError:
            log.warning("dropping a malformed worker heartbeat (%d bytes)", len(data))

    async def _rebuild(self) -> None:
        """Forget what is in memory and take it again from the log (after a batch could not be stored,
        or its commands not published): once the batches queued for commit are settled. While NATS or
        Postgres is away this fails and is tried again, less and less often (up to REBUILD_BACKOFF_MAX_S
        apart), so an outage costs no busy loop and its end is noticed within seconds."""
        await self._commits.flush()
        self._live.clear()
        self._admission = Admission(self._capacity)
        self._resync = False
        try:
            await self.resume()
        except Exception as exc:
            self._resync = True
            backoff = max(self._resync_backoff * 2, REBUILD_BACKOFF_S)
            self._resync_backoff = min(backoff, REBUILD_BACKOFF_MAX_S)
            self._resync_at = asyncio.get_running_loop().time() + self._resync_backoff
            if (isinstance(exc, BusError) and exc.transient) or _unavailable(exc):
                log.warning("rebuilding from the event log failed (%s); trying again in %.1f s", exc,
                            self._resync_backoff)
            else:
                log.exception("rebuilding from the event log failed; trying again in %.1f s",
                              self._resync_backoff)
            return
        self._resync_backoff = 0.0
        self._commits.repair()

    async def resume(self, partitions: Iterable[int] | None = None) -> None:
        """Rebuild every execution of the partitions owned (or of `partitions`) that has no terminal
        event and re-publish its pending commands."""
        resumed = self._owned if partitions is None else frozenset(partitions)
        for execution_id in await self.events.active_executions():
            if partition_of(execution_id) not in resumed:
                continue
            try:
                execution = await self._load(execution_id)
            except Exception:  # one broken execution must not stop the others
                log.exception("cannot resume execution", extra={"execution_id": execution_id})
                continue
            if execution is None:
                continue
            pending = [execution.issued[c] for c in execution.state.pending if c in execution.issued]
            if pending:
                log.info("resuming execution with %d pending commands", len(pending),
                         extra={"execution_id": execution_id})
            for command in pending:
                if isinstance(command, RunStep):
                    if command.command_id in execution.deferred:
                        continue  # waiting for capacity: `_load` gave it back to the admission
                    if command.command_id in execution.routed:
                        command = command.model_copy(update={"pool": execution.routed[command.command_id]})
                await self._publish(command, execution, resumed=True)
            await self._cancel_again(execution)
            execution.issued.clear()
        if self._admission.waiting:
            await self._dispatch_waiting()

    # ------------------------------------------------------------------ handling
    async def handle(self, deliveries: Sequence[Message]) -> None:
        """One batch of events, in four phases: fold it through `fire`; route the commands it gives
        (capacity, withdrawals); queue its events for the commit pipeline, with what must wait for
        the commit; send the admitted commands (the bus messages are acked once stored)."""
        batch = await self._fold(deliveries)
        decisions = self._route(batch)
        if self._traces is not None:
            self._traces.observe(batch.handled.events)
        batch.handled.after.append(partial(self._after_commit, batch, decisions))
        batch.handled.urgent = bool(batch.terminal)
        # the commands go out while the events are appended: a worker starts at once, and an outcome
        # that overtakes its cause's commit is held back by `_early` after a crash (commits.py)
        await self._commits.submit(batch.handled)
        await self._send_runs(decisions)

    async def _fold(self, deliveries: Sequence[Message]) -> _Batch:
        """Decode each delivery, hold back reports on commands not issued yet, and fire every input
        event of a live execution: the events to store and the commands to route."""
        batch = _Batch(Handled([]))
        handled = batch.handled
        for delivery in deliveries:
            try:
                events = decode_events(delivery.data)
            except ValueError:
                log.error("dropping a malformed event message (%d bytes)", len(delivery.data))
                handled.poison.append(delivery)
                continue
            if await self._early(delivery, events):
                continue
            for event in events:
                if event.type not in INPUT_EVENTS:
                    handled.events.append(event)
                    continue
                execution = await self._execution(event)
                if execution is None:  # an event of an unknown or ended execution is not ours to record
                    if delivery not in handled.poison:
                        handled.poison.append(delivery)
                    continue
                handled.events.append(event)
                decision = fire(execution.net, execution.state, event, execution.env)
                handled.events.extend(decision.events)
                for command in decision.commands:
                    if isinstance(command, RunStep | StartChild):
                        execution.known.add(command.command_id)
                    batch.commands.append((execution, command))
            if delivery not in handled.poison:
                handled.deliveries.append(delivery)
        return batch

    def _route(self, batch: _Batch) -> Decisions:
        """Runs go to the admission, cancels of runs still waiting there withdraw them (their outcome is
        ours to give), the rest is published after the commit; then what has capacity is admitted."""
        for execution, command in batch.commands:
            if isinstance(command, RunStep):
                self._admission.offer(command, self._demand(execution, command),
                                      priority=self._priority(execution, command))
            elif isinstance(command, CancelStep) and (
                    pulled := self._admission.withdraw(command.command_id)) is not None:
                batch.withdrawn.append((pulled, command.reason))
            else:
                batch.others.append((execution, command))
        events = batch.handled.events
        # settled after the offers: a command issued again in this batch (a rebuild re-derived it) whose
        # outcome is in the same batch must not stay waiting, or it would hold capacity for nothing
        self._admission.settle(e.command_id for e in events
                               if e.type in OUTCOMES and e.command_id and ends_command(e))
        decisions = self._admission.admit()
        events.extend(self._admission_events(decisions))
        batch.terminal = [event for event in events if event.type in TERMINAL_EVENTS]
        return decisions

    async def _after_commit(self, batch: _Batch, decisions: Decisions) -> None:
        """What may happen only once the batch's events are stored: failing what no pool can run,
        the outcomes of withdrawn runs, cancels and child starts, and the ends of executions."""
        await self._fail_impossible(decisions)
        for unsent, reason in batch.withdrawn:
            await self._publish_event(outcome_event(
                unsent.execution_id, unsent.command_id, unsent.step, unsent.loop_index,
                ResultEnvelope.fail("cancelled", f"step '{unsent.step}' was cancelled before it was "
                                                 f"dispatched: {reason}", retryable=False),
                claimer=unsent.cursor is not None))
        for execution, command in batch.others:
            await self._publish(command, execution)
        for event in batch.terminal:
            await self._finished(event)

    async def _execution(self, event: Event) -> _Execution | None:
        execution = self._live.get(event.execution_id)
        if execution is None and self._commits.uncommitted(event.execution_id):
            await self._commits.flush()  # the log must hold all of it before it is read back
            execution = self._live.get(event.execution_id)
        if execution is None:
            execution = await self._load(event.execution_id, first=event)
        return execution

    async def _early(self, delivery: Message, events: list[Event]) -> bool:
        """A report on a command this orchestrator has not issued (yet): it went out before its cause
        was committed and the cause is being taken again from the log (a crash, or an append that
        failed). Given back to come again later; recorded as a stale report after EARLY_MAX_S."""
        for event in events:
            if not event.command_id or event.type not in INPUT_EVENTS:
                continue
            execution = await self._execution(event)
            if execution is None and event.execution_id not in self._unstarted:
                continue  # ended: a late report changes nothing
            if execution is not None and event.command_id in execution.known:
                continue
            # a command not issued yet, or (execution is None) an execution whose `execution.started` is
            # not in the log yet: after a crash it comes again, and a worker's report sent while no
            # orchestrator ran may overtake it; dropped, that report would be lost and the step would hang
            waited = EARLY_RETRY_S * (delivery.num_delivered - 1)
            if waited >= EARLY_MAX_S:
                log.warning("a report on command %s of step %s was never matched by an issued command "
                            "within %.0f s; recording it as stale", event.command_id, event.step,
                            EARLY_MAX_S, extra={"execution_id": event.execution_id, "step": event.step})
                return False
            log.info("holding back a report on command %s of step %s (delivery %d): the command is not "
                     "issued yet", event.command_id, event.step, delivery.num_delivered,
                     extra={"execution_id": event.execution_id, "step": event.step})
            with contextlib.suppress(Exception):
                await delivery.nak(delay_s=EARLY_RETRY_S)
            return True
        return False

    async def _finished(self, event: Event) -> None:
        """A terminal event is stored: the execution's status, and its parent's step when it is a child."""
        await self.events.set_status(event.execution_id, event.type.split(".")[1])
        self._calls.disarm(event.execution_id)
        finished = self._live.pop(event.execution_id, None)
        if finished is not None and finished.started.get("parent_command_id"):
            await self._calls.report_end(finished.state, finished.started, event)

    # ------------------------------------------------------------------ capacity
    def _demand(self, execution: _Execution, command: RunStep) -> Demand:
        demand = execution.demands.get(command.step)
        if demand is None:
            playbook = execution.net.playbook
            try:
                demand = step_demand(playbook.step(command.step), self._capacity.known(), playbook)
            except KeyError:
                demand = Demand(step=command.step)
            execution.demands[command.step] = demand
        return demand

    @staticmethod
    def _priority(execution: _Execution, command: RunStep) -> float:
        if not execution.demands[command.step].needs():
            return 0.0  # holds nothing: goes out at once, no order to decide
        if execution.priorities is None:
            execution.priorities = step_priorities(execution.net)
        return execution.priorities.get(command.step, 0.0)

    @staticmethod
    def _admission_events(decisions: Decisions) -> list[Event]:
        """step.deferred for what waits for capacity, step.dispatched for what goes out after waiting or
        to another pool than the step names: what a restarted orchestrator needs to know."""
        waiting: dict[tuple[str, str, str], list[RunStep]] = {}
        for command, reason in decisions.deferred:
            waiting.setdefault((command.execution_id, command.step, reason), []).append(command)
        going: dict[tuple[str, str, str], list[RunStep]] = {}
        for command, record in decisions.admitted:
            if record:
                going.setdefault((command.execution_id, command.step, command.pool), []).append(command)
        events = []
        for (execution_id, step, reason), commands in waiting.items():
            log.info("step %s waits (%d command%s): %s", step, len(commands), "" if len(commands) == 1
                     else "s", reason, extra={"execution_id": execution_id, "step": step})
            events.append(_dispatch_event(commands, "step.deferred", {"reason": reason}))
        events.extend(_dispatch_event(commands, "step.dispatched") for commands in going.values())
        return events

    async def _send_runs(self, decisions: Decisions) -> None:
        """Publish what was admitted (concurrently: order between commands does not matter), the
        commands of one pool packed into shared messages up to the pool's batch limit. Their events are
        already queued for commit: what could not be published is sent again from the log after a
        rebuild."""
        try:
            by_pool: dict[str, list[tuple[RunStep, bytes]]] = {}
            for command, _ in decisions.admitted:
                encoded = await self._encode_run(command)
                if encoded is not None:
                    by_pool.setdefault(encoded[0].pool, []).append(encoded)
            sends = [self._publish_runs(chunk) for pool, runs in by_pool.items()
                     for chunk in pack(runs, lambda run: len(run[1]), max_bytes=COMMAND_MAX_BYTES,
                                       max_items=self._capacity.batch_limit(pool))]
            if len(sends) == 1:  # a chain's step: no gather (its tasks cost an event-loop turn)
                await sends[0]
            else:
                for start in range(0, len(sends), 256):
                    await asyncio.gather(*sends[start:start + 256])
        except Exception as exc:
            if isinstance(exc, BusError) and exc.transient:
                log.warning("publishing %d commands failed (%s); they are sent again from the log when NATS "
                            "answers", len(decisions.admitted), exc)
            else:
                log.exception("publishing %d commands failed; they are sent again after a rebuild from the "
                              "log", len(decisions.admitted))
            self._resync = True

    async def _fail_impossible(self, decisions: Decisions) -> None:
        """Fail what no pool can ever run, naming the missing capacity."""
        for command, reason in decisions.impossible:
            log.error("step %s cannot run: %s", command.step, reason,
                      extra={"execution_id": command.execution_id, "step": command.step})
            await self._publish_event(outcome_event(
                command.execution_id, command.command_id, command.step, command.loop_index,
                ResultEnvelope.fail("resource_exhausted", reason, retryable=False),
                claimer=command.cursor is not None))

    async def _dispatch_waiting(self) -> None:
        """Another admission round for the commands waiting for capacity (a worker came or left)."""
        self._capacity.changed = False
        decisions = self._admission.admit()

        async def after_commit() -> None:
            await self._fail_impossible(decisions)

        events = self._admission_events(decisions)
        if self._traces is not None:
            self._traces.observe(events)
        await self._commits.submit(Handled(events, after=[after_commit]))
        await self._send_runs(decisions)

    async def _publish(self, command: RunStep | CancelStep | StartChild, execution: _Execution, *,
                       resumed: bool = False) -> None:
        if isinstance(command, RunStep):
            await self._publish_run(command)
        elif isinstance(command, StartChild):
            execution.children[command.command_id] = command.child_execution_id
            await self._calls.start(command)  # its timeout is armed when its start is loaded (`_load`)
            if resumed:
                await self._calls.report_if_ended(command, self._replay_state)
        else:
            child = execution.children.get(command.command_id)
            if child is not None:  # cancelling a parent cancels its child
                await self._publish_event(Event(
                    event_id=uuid.uuid4().hex, idempotency_key=event_key(command.command_id, "cancel-child"),
                    execution_id=child,
                    type="execution.cancel_requested",
                    payload={"reason": f"parent execution {command.execution_id}: {command.reason}"}))
            self._cancels[command.command_id] = command
            await self.bus.publish_cancel(command.model_dump_json().encode())

    async def _publish_run(self, command: RunStep) -> None:
        encoded = await self._encode_run(command)
        if encoded is not None:
            await self._publish_runs([encoded])

    async def _encode_run(self, command: RunStep) -> tuple[RunStep, bytes] | None:
        """The command as it goes on the bus (large results slimmed to files); None when it cannot go
        (too large even so), after the step's failure is reported."""
        if self._traces is not None:  # the worker's tool calls are children of the command's span
            command = command.model_copy(update={
                "traceparent": command_traceparent(command.execution_id, command.command_id)})
        data = command.model_dump_json().encode()
        if len(data) > COMMAND_MAX_BYTES and self.work_dir is not None:
            command = self._slim(command)
            data = command.model_dump_json().encode()
        if len(data) <= COMMAND_MAX_BYTES:
            return command, data
        await self._unpublished(command, f"the command for step '{command.step}' is {len(data)} bytes, "
                                         f"above the {COMMAND_MAX_BYTES}-byte limit of the bus; pass "
                                         "large data by reference (a result over 64 KiB is stored as a "
                                         "file) rather than in the workload or ctx")
        return None

    async def _publish_runs(self, runs: list[tuple[RunStep, bytes]]) -> None:
        """One message with the commands (of one pool); the steps fail when the bus refuses it."""
        first = runs[0][0]
        msg_id = (first.command_id if len(runs) == 1
                  else "runs:" + derived_id(*(command.command_id for command, _ in runs)))
        try:
            await self.bus.publish_command(first.pool, msg_id, encode_runs([data for _, data in runs]))
        except BusError as exc:
            if exc.transient:  # still pending in the log: published again by the rebuild that follows
                raise
            for command, _ in runs:
                await self._unpublished(command, f"the command for step '{command.step}' could not be "
                                                 f"published: {exc}")

    async def _unpublished(self, command: RunStep, problem: str) -> None:
        log.error(problem, extra={"execution_id": command.execution_id, "step": command.step})
        await self._publish_event(outcome_event(
            command.execution_id, command.command_id, command.step, command.loop_index,
            ResultEnvelope.fail("resource_exhausted", problem, retryable=False),
            claimer=command.cursor is not None))

    def _slim(self, command: RunStep) -> RunStep:
        """Large step results inside a command go to files; the worker reads them back."""
        assert self.work_dir is not None
        results = dict(command.context.results)
        for name, entry in results.items():
            if entry.ref is None and json_size(entry.data) > 65536:
                inline, ref = externalize(entry.data, self.work_dir / command.execution_id)
                if ref is not None:
                    results[name] = entry.model_copy(update={"data": inline,
                                                             "ref": ref.model_dump(by_alias=True)})
        return command.model_copy(update={"context": command.context.model_copy(update={"results": results})})

    async def _cancel_again(self, execution: _Execution) -> None:
        """A resumed execution's cancels whose commands have not reported: sent again (and re-sent every
        CANCEL_RESEND_S, as before the restart); a command still waiting for capacity is withdrawn."""
        for command_id, cancel in execution.cancels.items():
            if command_id not in execution.state.pending:
                continue
            pulled = self._admission.withdraw(command_id)
            if pulled is not None:
                await self._publish_event(outcome_event(
                    pulled.execution_id, command_id, pulled.step, pulled.loop_index,
                    ResultEnvelope.fail("cancelled", f"step '{pulled.step}' was cancelled before it was "
                                                     f"dispatched: {cancel.reason}", retryable=False),
                    claimer=pulled.cursor is not None))
            else:
                await self._publish(cancel, execution)
        execution.cancels.clear()

    async def _resend_cancels(self) -> None:
        """Core NATS broadcasts are at most once: cancel again what still runs."""
        for command_id, command in list(self._cancels.items()):
            execution = self._live.get(command.execution_id)
            if execution is None or command_id not in execution.state.pending:
                del self._cancels[command_id]
                continue
            with contextlib.suppress(BusError):
                await self.bus.publish_cancel(command.model_dump_json().encode())

    async def _publish_event(self, event: Event) -> None:
        await self.bus.publish_event(event.execution_id, event.idempotency_key,
                                     event.model_dump_json().encode())

    # ------------------------------------------------------------------ loading
    def _net(self, text: str, overlays: dict[str, Any] | None = None) -> Net:
        """The net of the execution's playbook with the overlays its `execution.started` carries
        (approved configuration changes, docs/policies.md): the same text and overlays, the same net."""
        steps = (overlays or {}).get("steps") or {}
        digest = hashlib.sha256(text.encode())
        if steps:
            digest.update(json.dumps(steps, sort_keys=True, default=str).encode())
        key = digest.hexdigest()
        net = self._nets.get(key)
        if net is None:
            result = validate_text(text, "<execution playbook>")
            if result.net is None:
                messages = "; ".join(d.format() for d in result.errors[:5])
                raise OrchestratorError(f"the execution's playbook does not validate: {messages}")
            net = result.net
            if steps:
                patched, notes = apply_overlays(net.playbook, steps)
                for note in notes:
                    log.warning("overlay: %s", note)
                net = compile_net(patched)
            self._nets[key] = net
        return net

    def _replay_state(self, execution_id: str, started: Event, history: list[Event]) -> ExecutionState:
        return self._replay(execution_id, started, history).state

    def _replay(self, execution_id: str, started: Event, history: list[Event]) -> _Execution:
        """The execution as its log leaves it: every input event folded through `fire` again."""
        net = self._net(str(started.payload.get("playbook", "")), started.payload.get("overlays"))
        env = FireEnv(renderer=self._renderer, resolve_ref=self.resolve_ref,
                      playbook_path=started.payload.get("path"),
                      keychain=tuple(started.payload.get("keychain") or ()))
        execution = _Execution(net, ExecutionState(execution_id), env, started=dict(started.payload))
        for event in history:
            if event.type == "step.deferred":
                execution.deferred.update(dispatch_commands(event))
            elif event.type == "step.dispatched":
                for command_id in dispatch_commands(event):
                    execution.deferred.discard(command_id)
                    if event.pool:
                        execution.routed[command_id] = event.pool
            if event.type in INPUT_EVENTS:
                for command in fire(net, execution.state, event, env).commands:
                    if isinstance(command, RunStep | StartChild):
                        execution.issued[command.command_id] = command
                        execution.known.add(command.command_id)
                    if isinstance(command, StartChild):
                        execution.children[command.command_id] = command.child_execution_id
                    elif isinstance(command, CancelStep):
                        execution.cancels[command.command_id] = command
        return execution

    async def _load(self, execution_id: str, first: Event | None = None) -> _Execution | None:
        """The execution rebuilt from its log (or started from `first` when the log is empty)."""
        history = await self.events.events(execution_id)
        started = next((e for e in history if e.type == "execution.started"), None)
        if started is None and first is not None and first.type == "execution.started":
            started = first
        if started is None:
            if execution_id not in self._unstarted:
                log.warning("an event arrived for an execution whose start is not in the log (yet); it is "
                            "held back until the start comes", extra={"execution_id": execution_id})
            if len(self._unstarted) > 10_000:
                self._unstarted.clear()
            self._unstarted.add(execution_id)
            return None
        self._unstarted.discard(execution_id)
        if any(e.type in TERMINAL_EVENTS for e in history):
            return None
        execution = self._replay(execution_id, started, history)
        for command_id in execution.state.pending:  # what went out holds units; what waited waits again
            command = execution.issued.get(command_id)
            if isinstance(command, RunStep):
                demand = self._demand(execution, command)
                if command_id in execution.deferred:
                    self._admission.offer(command, demand, recorded=True,
                                          priority=self._priority(execution, command))
                else:
                    self._admission.sent(command.model_copy(update={
                        "pool": execution.routed.get(command_id, command.pool)}), demand)
        self._live[execution_id] = execution
        if not execution.state.cancelling:  # else it is being cancelled already
            self._calls.arm_timeout(execution_id, started.payload)
        return execution
