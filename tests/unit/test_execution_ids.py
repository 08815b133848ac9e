"""Execution ids (spec 13): positive 64-bit integers, time-ordered, 19 decimal digits; a child's id is a
pure function of recorded data; templates see the id as a number."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.dsl.context import build_context
from engine.dsl.templates import TemplateRenderer
from engine.net.fire import fire
from engine.net.state import ExecutionState
from engine.net.validate import validate_text
from engine.protocol.commands import StartChild
from engine.protocol.events import Event, derived_id
from engine.protocol.ids import (
    MAX_ID,
    ExecutionIds,
    as_int,
    child_execution_id,
    id_time,
    new_execution_id,
    template_value,
)
from engine.protocol.results import ResultEnvelope

T0 = datetime(2026, 12, 7, 10, 30, 0, 123000, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 1_000_000_000 + 123_000_000


class Clock:
    """A clock the test moves by hand (nanoseconds since 1970, like time.time_ns)."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def test_a_new_execution_id_is_19_digits_of_a_positive_integer_below_2_to_the_63() -> None:
    for _ in range(1000):
        text = new_execution_id()
        assert len(text) == 19 and text.isdigit() and not text.startswith("0"), text
        assert 0 < int(text) < 2**63
        assert as_int(text) == int(text)


def test_new_execution_ids_strictly_increase_within_a_process() -> None:
    ids = [int(new_execution_id()) for _ in range(20000)]  # many share a millisecond
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    assert len(set(ids)) == len(ids)


def test_ids_of_one_millisecond_increase_even_when_the_random_bits_go_down() -> None:
    falling = iter(range(4_000_000, 0, -1))
    ids = ExecutionIds(clock_ns=Clock(T0_NS), random_bits=lambda bits: next(falling))
    made = [ids.next() for _ in range(100)]
    assert made == sorted(set(made))
    assert {id_time(i) for i in made} == {T0}  # still that millisecond


def test_ids_still_increase_when_the_clock_goes_back() -> None:
    clock = Clock(T0_NS)
    ids = ExecutionIds(clock_ns=clock)
    first = ids.next()
    clock.ns -= 5_000_000_000
    assert ids.next() > first


def test_a_later_millisecond_gives_a_larger_id_whatever_the_random_bits() -> None:
    clock = Clock(T0_NS)
    high = ExecutionIds(clock_ns=clock, random_bits=lambda bits: (1 << bits) - 1)
    low = ExecutionIds(clock_ns=clock, random_bits=lambda bits: 0)
    before = high.next()
    clock.ns += 1_000_000
    after = low.next()
    assert before < after
    assert id_time(before) == T0 and id_time(after) == T0 + timedelta(milliseconds=1)


@pytest.mark.parametrize("month", [(2017, 8), (2018, 1), (2026, 12), (2050, 6), (2079, 8)])
def test_ids_from_2017_to_2079_have_19_digits_so_text_order_is_time_order(month: tuple[int, int]) -> None:
    start = int(datetime(*month, 1, tzinfo=UTC).timestamp() * 1e9)
    ids = [ExecutionIds(clock_ns=Clock(start + n * 997_000_000_000)).next() for n in range(50)]
    assert all(len(str(i)) == 19 for i in ids)
    assert sorted(ids) == ids == sorted(ids, key=str)


def test_a_clock_outside_2017_to_2079_still_gives_a_19_digit_id_below_2_to_the_63() -> None:
    for when in (datetime(1999, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)):
        made = ExecutionIds(clock_ns=Clock(int(when.timestamp() * 1e9))).next()
        assert len(str(made)) == 19 and 0 < made <= MAX_ID


def test_only_canonical_digits_are_read_as_a_number() -> None:
    assert as_int("2241043291894150228") == 2241043291894150228
    for other in ("9223372036854775808", "0123", "-5", "12a", "", "³", "6f0e4a523c1d5b7e9a4f6e6f65746c00"):
        assert as_int(other) is None, other
    assert template_value("2241043291894150228") == 2241043291894150228
    legacy = uuid.uuid4().hex  # ids made before 2026-12 stay text
    assert template_value(legacy) == legacy


def test_a_child_id_comes_from_the_event_time_and_the_command_and_exceeds_the_one_before() -> None:
    parent = ExecutionIds(clock_ns=Clock(T0_NS)).next()
    child = child_execution_id(parent, T0 + timedelta(seconds=2), "cmd-a")
    assert child == child_execution_id(parent, T0 + timedelta(seconds=2), "cmd-a")  # deterministic
    assert id_time(child) == T0 + timedelta(seconds=2)
    assert child_execution_id(parent, T0 + timedelta(seconds=2), "cmd-b") != child
    assert child_execution_id(child, T0 + timedelta(seconds=2), "cmd-a") == child + 1  # never reused
    assert child_execution_id(parent, T0, "cmd-a") > parent  # same millisecond as the parent: above it


# ---------------------------------------------------------------------- in the pure core
LOOP_OF_CALLS = """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: many_children}
    workload: {xs: []}
    workflow:
      - step: each
        loop: {in: "{{ workload.xs }}", iterator: x, spec: {mode: parallel, max_in_flight: IN_FLIGHT}}
        tool: {kind: playbook, path: some/child, input: {x: "{{ iter.x }}"}}
    """


class Parent:
    """One execution of LOOP_OF_CALLS folded through `fire`, as the orchestrator does live."""

    def __init__(self, execution_id: str, in_flight: int) -> None:
        self.net = validate_text(textwrap.dedent(LOOP_OF_CALLS).replace("IN_FLIGHT", str(in_flight))).net
        assert self.net is not None
        self.state = ExecutionState(execution_id)
        self.inputs: list[Event] = []
        self.starts: list[StartChild] = []
        self.derived: list[Event] = []

    def feed(self, event: Event) -> None:
        self.inputs.append(event)
        decision = fire(self.net, self.state, event)  # type: ignore[arg-type]
        self.starts += [c for c in decision.commands if isinstance(c, StartChild)]
        self.derived += decision.events

    def start(self, n: int) -> None:
        eid = self.state.execution_id
        self.feed(Event(event_id=uuid.uuid4().hex, idempotency_key=f"{eid}:started", execution_id=eid,
                        type="execution.started", timestamp=T0, payload={"payload": {"xs": list(range(n))}}))

    def child_ends(self, index: int, at: datetime) -> None:
        command = next(c for c in self.starts if c.loop_index == index)
        self.feed(Event(event_id=uuid.uuid4().hex, idempotency_key=f"{command.command_id}:outcome",
                        execution_id=self.state.execution_id, type="loop.item.succeeded", step="each",
                        command_id=command.command_id, loop_index=index, timestamp=at,
                        result=ResultEnvelope.ok(index)))

    def child_ids(self) -> list[int]:
        return [int(c.child_execution_id) for c in self.starts]


def test_a_loop_starting_thousands_of_children_in_one_millisecond_gives_each_its_own_int64_id() -> None:
    parent_id = ExecutionIds(clock_ns=Clock(T0_NS)).next()
    parent = Parent(str(parent_id), in_flight=5000)
    parent.start(5000)
    ids = parent.child_ids()
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert all(len(str(i)) == 19 and parent_id < i <= MAX_ID for i in ids)
    assert ids == sorted(ids)  # in the order the loop started them
    assert id_time(ids[0]) == T0  # the time of the event that started them
    assert parent.state.last_child_id == ids[-1]
    scheduled = [e.payload["child_execution_id"] for e in parent.derived if e.type == "step.scheduled"]
    assert scheduled == [c.child_execution_id for c in parent.starts]


def test_replaying_the_recorded_events_gives_every_child_the_same_id() -> None:
    # the parent's id from the test's clock: an id from the real one is later than T0 once the wall
    # clock passes it, and its children's ids (never below the parent's) would then carry today's time
    live = Parent(str(ExecutionIds(clock_ns=Clock(T0_NS)).next()), in_flight=2)
    live.start(5)
    later = T0 + timedelta(seconds=1)
    live.child_ends(0, later)
    live.child_ends(1, later)  # the same millisecond: the next child still gets a larger id
    ids = live.child_ids()
    assert len(ids) == 4 and ids == sorted(set(ids))
    assert [id_time(i) for i in ids] == [T0, T0, later, later]
    replay = Parent(live.state.execution_id, in_flight=2)
    for event in live.inputs:
        replay.feed(event)
    assert replay.child_ids() == ids
    assert [e.model_dump() for e in replay.derived] == [e.model_dump() for e in live.derived]
    assert replay.state == live.state


def test_an_execution_with_a_hex_id_from_before_2026_12_replays_with_the_child_ids_it_recorded() -> None:
    parent = Parent("6f0e4a523c1d5b7e9a4f6e6f65746c00", in_flight=3)  # made by uuid4().hex
    parent.start(3)
    assert [c.child_execution_id for c in parent.starts] == [derived_id("child", c.command_id)
                                                             for c in parent.starts]
    assert parent.state.last_child_id == 0


# ---------------------------------------------------------------------- in templates
def _render(template: Any, execution_id: str) -> Any:
    return TemplateRenderer().render(template, build_context(execution_id=template_value(execution_id))).value


def test_templates_see_the_execution_id_as_a_number_that_renders_as_its_digits_in_sql() -> None:
    eid = new_execution_id()
    assert _render("{{ execution_id }}", eid) == int(eid)
    assert _render("{{ job.uuid }}", eid) == int(eid) == _render("{{ job.id }}", eid)
    assert _render("INSERT INTO t VALUES ({{ execution_id }})", eid) == f"INSERT INTO t VALUES ({eid})"
    assert _render("{{ execution_id + 1 }}", eid) == int(eid) + 1
    assert _render("{{ execution_id | tojson }}", eid) == eid


def test_workload_templates_at_start_see_the_execution_id_as_a_number() -> None:
    net = validate_text(textwrap.dedent("""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: w}
        workload: {run: "{{ execution_id }}", label: "run-{{ job.execution_id }}"}
        workflow:
          - {step: a, tool: {kind: noop}}
        """)).net
    assert net is not None
    eid = new_execution_id()
    state = ExecutionState(eid)
    fire(net, state, Event(event_id="e", idempotency_key=f"{eid}:started", execution_id=eid,
                           type="execution.started"))
    assert state.workload["run"] == int(eid) and state.workload["label"] == f"run-{eid}"
