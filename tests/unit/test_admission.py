"""Dispatch under capacity: live pools from heartbeats, admission that never goes beyond them."""

from __future__ import annotations

from engine.plan.demands import Demand
from engine.plan.pools import Pool, PoolSet
from engine.protocol.commands import RunStep
from engine.protocol.workers import WorkerHeartbeat
from engine.runtime.admission import Admission, LiveCapacity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def beat(worker: str, pool: str, *, stopping: bool = False, **capacity: float) -> WorkerHeartbeat:
    return WorkerHeartbeat(worker=worker, pool=pool, capacity=capacity, labels=[pool], stopping=stopping)


def command(key: str, step: str = "s", pool: str = "default") -> RunStep:
    return RunStep(command_id=key, execution_id="x", step=step, run=1, pool=pool, tasks=[])


def test_a_pool_s_live_capacity_is_the_sum_of_its_live_workers() -> None:
    live = LiveCapacity(clock=Clock())
    live.heartbeat(beat("w1", "default", cpu=2))
    live.heartbeat(beat("w2", "default", cpu=3))
    live.heartbeat(beat("g1", "gpu", cpu=1, gpu=1))
    pools = live.live()
    assert pools is not None
    assert pools.get("default").capacity == {"cpu": 5}  # type: ignore[union-attr]
    assert pools.get("gpu").capacity == {"cpu": 1, "gpu": 1}  # type: ignore[union-attr]


def test_a_worker_not_heard_from_holds_no_capacity_and_one_that_stops_leaves_at_once() -> None:
    clock = Clock()
    live = LiveCapacity(clock=clock, dead_after_s=7)
    live.heartbeat(beat("w1", "default", cpu=2))
    live.heartbeat(beat("w2", "default", cpu=2))
    live.heartbeat(beat("w2", "default", cpu=2, stopping=True))
    assert live.live().get("default").capacity == {"cpu": 2}  # type: ignore[union-attr]
    clock.now += 8
    assert live.live() is None


def test_admission_never_sends_more_than_fits_and_sends_the_rest_as_units_free() -> None:
    live = LiveCapacity(clock=Clock())
    live.heartbeat(beat("w1", "default", cpu=2))
    admission = Admission(live)
    demand = Demand(step="s", units={"cpu": 1})
    for key in ("a", "b", "c"):
        admission.offer(command(key), demand)
    first = admission.admit()
    assert [c.command_id for c, _ in first.admitted] == ["a", "b"]
    assert [c.command_id for c, _ in first.deferred] == ["c"]
    assert "cpu 2 of 2 in use" in first.deferred[0][1]
    assert admission.admit().admitted == []  # nothing freed
    admission.settle(["a"])
    second = admission.admit()
    assert [(c.command_id, recorded) for c, recorded in second.admitted] == [("c", True)]


def test_a_demand_no_pool_can_ever_meet_is_refused_naming_the_missing_capacity() -> None:
    live = LiveCapacity(PoolSet((Pool("default", frozenset(), {"cpu": 4}),)), clock=Clock())
    admission = Admission(live)
    admission.offer(command("a"), Demand(step="train", units={"gpu": 2}, explicit=frozenset({"gpu"})))
    decisions = admission.admit()
    [(refused, reason)] = decisions.impossible
    assert refused.command_id == "a" and "gpu" in reason and "train" in reason


def test_a_required_label_routes_the_command_to_the_pool_that_has_it() -> None:
    live = LiveCapacity(clock=Clock())
    live.heartbeat(beat("w1", "default", cpu=4))
    live.heartbeat(beat("g1", "gpu", cpu=4, gpu=1))
    admission = Admission(live)
    admission.offer(command("a"), Demand(step="s", units={"cpu": 1}, require=frozenset({"gpu"})))
    [(sent, recorded)] = admission.admit().admitted
    assert sent.pool == "gpu" and recorded  # routed elsewhere than the step named: recorded


def test_a_waiting_command_can_be_withdrawn_before_it_goes_out() -> None:
    live = LiveCapacity(clock=Clock())
    admission = Admission(live)
    admission.offer(command("a"), Demand(step="s", units={"cpu": 1}))
    assert admission.admit().deferred  # no live worker yet
    withdrawn = admission.withdraw("a")
    assert withdrawn is not None and withdrawn.command_id == "a"
    assert admission.waiting == 0


def test_a_large_loop_sharing_one_demand_is_admitted_in_priority_order_as_units_free() -> None:
    live = LiveCapacity(clock=Clock())
    live.heartbeat(beat("w1", "default", cpu=4))
    live.heartbeat(beat("g1", "gpu", gpu=1))
    admission = Admission(live)
    item = Demand(step="loop", units={"cpu": 1})  # one Demand object for every item, as the orchestrator
    big = Demand(step="big", units={"cpu": 3})
    gpu = Demand(step="g", units={"gpu": 1})
    admission.offer(command("big"), big, priority=5.0)
    for index in range(1000):
        admission.offer(command(f"i{index:04d}"), item)
    admission.offer(command("g", pool="gpu"), gpu)
    first = admission.admit()
    assert [c.command_id for c, _ in first.admitted] == ["big", "i0000", "g"]
    assert len(first.deferred) == 1000 - 1
    assert len({reason for _, reason in first.deferred}) == 1  # one reason for the shared demand
    admission.settle(["big"])
    second = admission.admit()
    assert [c.command_id for c, _ in second.admitted] == ["i0001", "i0002", "i0003"]
    assert second.deferred == [] and admission.waiting == 1000 - 4


def default_worker(worker: str, concurrency: int, pool: str = "default") -> WorkerHeartbeat:
    """A worker declaring the default capacity: one cpu per slot."""
    return WorkerHeartbeat(worker=worker, pool=pool, capacity={"cpu": float(concurrency)},
                           concurrency=concurrency, labels=[pool])


def test_slot_sized_steps_go_to_a_slot_bound_pool_at_once_and_still_hold_their_units() -> None:
    live = LiveCapacity(clock=Clock())
    live.heartbeat(default_worker("w1", 2))
    admission = Admission(live)
    item = Demand(step="loop", units={"cpu": 1}, kinds=("python",))
    for key in ("a", "b", "c", "d"):
        admission.offer(command(key, "loop"), item)
    first = admission.admit()
    assert [c.command_id for c, _ in first.admitted] == ["a", "b", "c", "d"]  # the workers' slots bound them
    assert first.deferred == [] and first.impossible == []
    admission.offer(command("big", "big"), Demand(step="big", units={"cpu": 2}))
    second = admission.admit()
    assert second.admitted == [] and [c.command_id for c, _ in second.deferred] == ["big"]
    admission.settle(["a", "b", "c", "d"])
    assert [c.command_id for c, _ in admission.admit().admitted] == ["big"]


def test_steps_wait_in_admission_when_a_worker_declares_other_capacity_than_its_slots() -> None:
    live = LiveCapacity(clock=Clock())
    live.heartbeat(default_worker("w1", 4))
    live.heartbeat(WorkerHeartbeat(worker="w2", pool="default", capacity={"cpu": 1.0, "gpu": 1.0},
                                   concurrency=4, labels=["default"]))
    admission = Admission(live)
    item = Demand(step="loop", units={"cpu": 1})
    for key in "abcdefg":
        admission.offer(command(key, "loop"), item)
    decisions = admission.admit()
    assert len(decisions.admitted) == 5 and len(decisions.deferred) == 2  # cpu 4 + 1: admission bounds it


def test_a_step_with_labels_or_more_than_one_cpu_is_never_left_to_the_queue() -> None:
    live = LiveCapacity(clock=Clock())
    live.heartbeat(default_worker("w1", 1))
    admission = Admission(live)
    labelled = Demand(step="l", units={"cpu": 1}, prefer=("default",))
    for key in ("a", "b"):
        admission.offer(command(key, "l"), labelled)
    decisions = admission.admit()
    assert [c.command_id for c, _ in decisions.admitted] == ["a"]
    assert [c.command_id for c, _ in decisions.deferred] == ["b"]
