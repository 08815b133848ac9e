"""Compiling a playbook into a net: arcs in order, joins with their predecessors, cycles, loops, pipelines."""

from __future__ import annotations

import textwrap

from engine.net.net import Net
from engine.net.validate import validate_file, validate_text
from tests.conftest import EXAMPLES


def net_of(text: str) -> Net:
    result = validate_text(textwrap.dedent(text))
    assert result.net is not None, [d.format() for d in result.diagnostics]
    return result.net


def test_a_step_reached_from_several_branches_is_a_join_with_those_predecessors() -> None:
    net = validate_file(EXAMPLES / "02_join.yaml").net
    assert net is not None
    assert net.joins == ("merge",)
    assert net.transition("merge").forward_predecessors == {"a", "b", "c"}
    assert net.transition("start").mode == "inclusive"
    assert [a.target for a in net.transition("start").arcs] == ["a", "b", "c"]
    assert net.ancestors["merge"] == {"start", "a", "b", "c"}


def test_a_back_edge_does_not_make_a_polling_step_a_join() -> None:
    net = validate_file(EXAMPLES / "14_cycle_poll.yaml").net
    assert net is not None
    poll = net.transition("poll")
    assert poll.predecessors == {"poll"}
    assert poll.forward_predecessors == frozenset()
    assert not poll.is_join
    assert net.on_cycle("poll", "poll")
    assert not net.on_cycle("poll", "done")


def test_a_cycle_through_a_join_keeps_only_the_forward_predecessors() -> None:
    net = net_of("""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: loop_back}
        workflow:
          - step: start
            tool: {kind: noop}
            next: {spec: {mode: inclusive}, arcs: [{step: a}, {step: b}]}
          - {step: a, tool: {kind: noop}, next: merge}
          - {step: b, tool: {kind: noop}, next: merge}
          - step: merge
            tool: {kind: noop}
            next: [{step: again, when: "{{ false }}"}]
          - {step: again, tool: {kind: noop}, next: a}
        """)
    merge = net.transition("merge")
    assert merge.predecessors == {"a", "b"}
    assert merge.forward_predecessors == {"b"}  # a sits on the cycle merge -> again -> a
    assert merge.is_join
    assert net.transition("a").forward_predecessors == {"start"}
    assert net.transition("a").is_join  # reached from start and, around the cycle, from again


def test_exclusive_arcs_keep_yaml_order_with_their_conditions_and_writes() -> None:
    net = validate_file(EXAMPLES / "03_exclusive_routing.yaml").net
    assert net is not None
    arcs = net.transition("measure").arcs
    assert [(a.target, a.when) for a in arcs] == [("hot", "{{ measure.is_hot }}"), ("cold", None)]
    assert net.transition("measure").mode == "exclusive"
    set_net = validate_file(EXAMPLES / "12_set_ctx.yaml").net
    assert set_net is not None
    assert set_net.transition("config").arcs[0].set == {"ctx.source": "{{ config.source }}",
                                                         "ctx.route": "b"}


def test_loops_and_pipelines_are_part_of_the_structure() -> None:
    loop_net = validate_file(EXAMPLES / "04_loop_parallel.yaml").net
    assert loop_net is not None
    loop = loop_net.transition("square").loop
    assert loop is not None
    assert (loop.iterator, loop.mode, loop.max_in_flight) == ("x", "parallel", 3)
    pipe = net_of("""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: p}
        workflow:
          - step: ingest
            spec: {policy: {failure: {mode: best_effort}}}
            tool:
              - {name: fetch, kind: noop}
              - {name: store, kind: noop}
        """)
    assert pipe.transition("ingest").tasks == ("fetch", "store")
    assert pipe.transition("ingest").best_effort


def test_entry_and_final_steps_come_from_the_executor_spec() -> None:
    net = net_of("""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: ends}
        executor: {spec: {entry_step: b, final_step: cleanup}}
        workflow:
          - {step: a, tool: {kind: noop}}
          - {step: b, tool: {kind: noop}, next: a}
          - {step: cleanup, tool: {kind: noop}}
        """)
    assert (net.entry, net.final) == ("b", "cleanup")
    assert net.reachable == {"a", "b", "cleanup"}


def test_step_names_start_and_end_are_ordinary_and_nothing_is_appended() -> None:
    net = net_of("""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: plain}
        workflow:
          - {step: start, tool: {kind: noop}, next: end}
          - {step: end, tool: {kind: noop}}
        """)
    assert net.order == ("start", "end")
    assert net.transition("end").arcs == ()
