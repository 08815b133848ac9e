"""Which orchestrator owns which partition: the pure part of the leases (engine/runtime/partitions.py)."""

from __future__ import annotations

from engine.protocol import subjects
from engine.protocol.partitions import PARTITIONS, partition_of
from engine.runtime.partitions import LeaseView, assignment, plan, wanted_owner


def test_an_execution_s_partition_is_stable_and_the_partitions_are_all_used() -> None:
    ids = [f"exec-{i}" for i in range(2000)]
    assert [partition_of(i) for i in ids] == [partition_of(i) for i in ids]
    assert {partition_of(i) for i in ids} == set(range(PARTITIONS))


def test_event_and_report_subjects_carry_the_execution_s_partition() -> None:
    partition = partition_of("abc123")
    assert subjects.event_subject("abc123", "p") == f"p.evt.{partition:02d}.abc123"
    assert subjects.report_subject(partition, "p") == f"p.rpt.{partition:02d}"
    assert subjects.partition_event_subjects(partition, "p") == f"p.evt.{partition:02d}.>"


def test_every_member_computes_the_same_owner_whatever_order_it_lists_the_members_in() -> None:
    members = ["a1", "b2", "c3"]
    assert assignment(members) == assignment(list(reversed(members)))
    assert wanted_owner(3, []) is None


def test_each_of_several_members_is_given_a_share_and_a_joining_member_moves_only_its_own() -> None:
    three = assignment(["a1", "b2", "c3"])
    assert {owner for owner in three.values()} == {"a1", "b2", "c3"}
    four = assignment(["a1", "b2", "c3", "d4"])
    moved = [p for p in range(PARTITIONS) if three[p] != four[p]]
    assert moved and all(four[p] == "d4" for p in moved)


def test_a_lone_member_takes_every_partition_nobody_owns() -> None:
    view = LeaseView(me="a1", members=["a1"], owners=dict.fromkeys(range(PARTITIONS)))
    assert plan(view).take == frozenset(range(PARTITIONS)) and not plan(view).give


def test_an_owner_gives_up_what_a_new_member_should_own_and_the_newcomer_waits_for_it() -> None:
    members = ["a1", "b2"]
    wanted = assignment(members)
    owners: dict[int, str | None] = dict.fromkeys(range(PARTITIONS), "a1")
    old = plan(LeaseView(me="a1", members=members, owners=owners))
    assert old.give == {p for p in range(PARTITIONS) if wanted[p] == "b2"} and not old.take
    assert not plan(LeaseView(me="b2", members=members, owners=owners)).take  # still owned: not yet
    released = {p: (None if p in old.give else "a1") for p in range(PARTITIONS)}
    assert plan(LeaseView(me="b2", members=members, owners=released)).take == old.give


def test_a_member_whose_heartbeat_is_late_takes_nothing() -> None:
    view = LeaseView(me="late", members=["a1"], owners=dict.fromkeys(range(PARTITIONS)))
    assert not plan(view).take and not plan(view).give
