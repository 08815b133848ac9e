"""Spec section 5 (context, results and `set`) and section 6 (loops), each as a small playbook run through
the real stack with `noetl run --json`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.helpers import (
    Batch,
    Case,
    Noetl,
    completed,
    failed,
    inline,
    of_type,
    peak_in_flight_by_order,
    peak_in_flight_by_time,
)

CASES = {
    # ------------------------------------------------------------------ section 5
    "set_order": Case(inline("set_order", """\
        workflow:
          - step: a
            tool: {kind: python, code: "result = {'v': 2}"}
            set: {ctx.x: "{{ a.v * 10 }}"}
            next:
              arcs:
                - step: b
                  set: {ctx.y: "{{ ctx.x + 1 }}", ctx.nested.z: "{{ ctx.x + 2 }}"}
          - step: b
            tool:
              kind: python
              input: {x: "{{ ctx.x }}", y: "{{ ctx.y }}", z: "{{ ctx.nested.z }}", bare: "{{ y }}"}
              code: "result = {'x': x, 'y': y, 'z': z, 'bare': bare}"
        """), events=True),
    "workload_read_only": Case(inline("workload_read_only", """\
        workload: {x: 1, db: {host: h, port: 1}, tags: [a, b]}
        workflow:
          - step: a
            tool: {kind: noop}
            set: {ctx.x: 2}
            next: {arcs: [{step: b}]}
          - step: b
            tool:
              kind: python
              input: {w: "{{ workload.x }}", c: "{{ ctx.x }}", db: "{{ workload.db }}", top: "{{ db.port }}",
                      tags: "{{ workload.tags }}", extra: "{{ workload.extra }}"}
              code: "result = {'w': w, 'c': c, 'db': db, 'top': top, 'tags': tags, 'extra': extra}"
        """), payload={"db": {"port": 2}, "tags": ["c"], "extra": True}),
    "cycle_max_runs": Case(inline("cycle_max_runs", """\
        workflow:
          - step: spin
            spec: {max_runs: 3}
            tool: {kind: noop, result: 1}
            next: {arcs: [{step: spin}]}
        """), events=True),
    "loop_result_in_set_and_arcs": Case(inline("loop_result_in_set_and_arcs", """\
        workflow:
          - step: sq
            loop: {in: [3, 2, 1, 0], iterator: n, spec: {mode: parallel}}
            tool: {kind: python, code: "import time; time.sleep(n * 0.1); result = n * n"}
            set: {ctx.all: "{{ sq }}", ctx.first: "{{ sq[0] }}", ctx.total: "{{ sq.stats.total }}"}
            next:
              arcs:
                - {step: use, when: "{{ event.name == 'loop.done' and sq | length == 4 }}"}
          - step: use
            tool:
              kind: python
              input: {all: "{{ ctx.all }}", first: "{{ ctx.first }}", total: "{{ ctx.total }}",
                      results: "{{ sq.results }}", stats: "{{ sq.stats }}"}
              code: |
                result = {'all': all, 'first': first, 'total': total, 'results': results, 'stats': stats}
        """), events=True),
    "parallel_ctx_writes": Case(inline("parallel_ctx_writes", """\
        workflow:
          - step: each
            loop: {in: [1, 2, 3, 4], iterator: n, spec: {mode: parallel}}
            tool:
              - name: work
                kind: python
                code: "result = n"
                set: {ctx.last: "{{ output.data }}"}
            next: {arcs: [{step: read}]}
          - step: read
            tool: {kind: python, input: {last: "{{ ctx.last }}"}, code: "result = last"}
        """), events=True),
    # ------------------------------------------------------------------ section 6
    "sequential_loop": Case(inline("sequential_loop", """\
        workflow:
          - step: each
            loop: {in: "{{ workload.items }}", iterator: item}
            tool:
              kind: python
              input: {i: "{{ iter._index }}", first: "{{ iter._first }}", last: "{{ iter._last }}",
                      via_iter: "{{ iter.item.name }}", via_bare: "{{ item.name }}", li: "{{ loop_index }}"}
              code: |
                import time
                time.sleep(0.05)
                result = {'i': i, 'first': first, 'last': last, 'name': via_iter, 'bare': via_bare,
                          'li': li, 'code_sees': item['name']}
        workload: {items: [{name: x}, {name: y}, {name: z}]}
        """), events=True),
    "parallel_loop_order": Case(inline("parallel_loop_order", """\
        workflow:
          - step: each
            loop: {in: [1.2, 0.6, 0.0], iterator: delay, spec: {mode: parallel}}
            tool: {kind: python, code: "import time; time.sleep(delay); result = delay"}
        """), events=True),
    "empty_loop": Case(inline("empty_loop", """\
        workflow:
          - step: each
            loop: {in: "{{ workload.items }}", iterator: item, spec: {mode: parallel}}
            tool: {kind: python, code: "result = item"}
            next: {arcs: [{step: after, when: "{{ event.name == 'loop.done' }}"}]}
          - step: after
            tool: {kind: python, input: {got: "{{ each }}", stats: "{{ each.stats }}"},
                   code: "result = {'got': got, 'stats': stats}"}
        workload: {items: []}
        """)),
    "failed_item_fails_loop": Case(inline("failed_item_fails_loop", """\
        workflow:
          - step: each
            loop: {in: [1, 0, 2], iterator: d}
            tool: {kind: python, code: "result = 10 // d"}
            next: {arcs: [{step: after}]}
          - {step: after, tool: {kind: noop}}
        """), events=True),
    "failed_item_parallel": Case(inline("failed_item_parallel", """\
        workflow:
          - step: each
            loop: {in: [1, 0, 2, 5], iterator: d, spec: {mode: parallel, max_in_flight: 2}}
            tool: {kind: python, code: "result = 10 // d"}
        """)),
    "best_effort_parallel": Case(inline("best_effort_parallel", """\
        workflow:
          - step: each
            spec: {policy: {failure: {mode: best_effort}}}
            loop: {in: [1, 0, 2, 0, 5], iterator: d, spec: {mode: parallel, max_in_flight: 2}}
            tool: {kind: python, code: "result = 10 // d"}
            next: {arcs: [{step: after}]}
          - step: after
            tool: {kind: python, input: {s: "{{ each.stats }}", r: "{{ each }}"},
                   code: "result = {'stats': s, 'results': r}"}
        """)),
}


@pytest.fixture(scope="module")
def runs(e2e_stack: Noetl) -> Iterator[Batch]:
    batch = e2e_stack.batch(CASES)
    yield batch
    batch.close()


# ---------------------------------------------------------------------- section 5
def test_step_set_then_arc_set_then_the_next_step_sees_both_in_ctx(runs: Batch) -> None:
    run = runs["set_order"]
    completed(run)
    assert run.step("b")["result"] == {"x": 20, "y": 21, "z": 22, "bare": 21}
    writes = [(e["payload"]["source"], e["payload"]["writes"]) for e in of_type(run.log, "ctx.updated")]
    assert writes == [("step 'a' set", {"ctx.x": 20}),
                      ("step 'a' arc to 'b' set", {"ctx.y": 21, "ctx.nested.z": 22})]
    [b_scheduled] = of_type(run.log, "step.scheduled", "b")
    assert all(e["seq"] < b_scheduled["seq"] for e in of_type(run.log, "ctx.updated"))


def test_the_payload_deep_merges_into_a_workload_that_set_cannot_change(runs: Batch) -> None:
    run = runs["workload_read_only"]
    completed(run)
    assert run.step("b")["result"] == {"w": 1, "c": 2, "db": {"host": "h", "port": 2}, "top": 2,
                                       "tags": ["c"], "extra": True}


def test_a_cycle_past_max_runs_fails_with_a_clear_error(runs: Batch) -> None:
    run = runs["cycle_max_runs"]
    failed(run)
    assert len(of_type(run.log, "step.succeeded", "spin")) == 3
    assert run.doc["error"]["step"] == "spin"
    assert "max_runs=3" in run.doc["error"]["message"]
    assert run.step("spin")["status"] == "failed"


def test_a_loop_step_is_the_ordered_list_of_its_results_for_its_set_and_arcs(runs: Batch) -> None:
    run = runs["loop_result_in_set_and_arcs"]
    completed(run)
    assert run.step("use")["result"] == {"all": [9, 4, 1, 0], "first": 9, "total": 4,
                                         "results": [9, 4, 1, 0],
                                         "stats": {"total": 4, "succeeded": 4, "failed": 0}}
    set_events = [e for e in of_type(run.log, "ctx.updated", "sq")]
    assert len(set_events) == 1  # the step's set applies once, after the whole loop
    [loop_done] = of_type(run.log, "loop.completed", "sq")
    assert set_events[0]["seq"] > loop_done["seq"]


def test_parallel_writes_to_one_ctx_key_are_each_recorded_and_the_last_applied_wins(runs: Batch) -> None:
    run = runs["parallel_ctx_writes"]
    completed(run)
    writes = [e["payload"]["writes"]["ctx.last"] for e in of_type(run.log, "ctx.updated", "each")]
    assert sorted(writes) == [1, 2, 3, 4]
    assert run.step("read")["result"] == writes[-1]


# ---------------------------------------------------------------------- section 6
def test_a_sequential_loop_runs_one_item_at_a_time_with_its_index_and_iterator(runs: Batch) -> None:
    run = runs["sequential_loop"]
    completed(run)
    assert run.step("each")["result"] == [
        {"i": 0, "first": True, "last": False, "name": "x", "bare": "x", "li": 0, "code_sees": "x"},
        {"i": 1, "first": False, "last": False, "name": "y", "bare": "y", "li": 1, "code_sees": "y"},
        {"i": 2, "first": False, "last": True, "name": "z", "bare": "z", "li": 2, "code_sees": "z"},
    ]
    assert peak_in_flight_by_order(run.log, "each") == 1
    assert [e["loop_index"] for e in of_type(run.log, "step.scheduled", "each")] == [0, 1, 2]


def test_a_parallel_loop_gives_results_in_input_order_whatever_order_they_finished_in(runs: Batch) -> None:
    run = runs["parallel_loop_order"]
    completed(run)
    assert run.step("each")["result"] == [1.2, 0.6, 0.0]
    finished = [e["loop_index"] for e in of_type(run.log, "loop.item.succeeded", "each")]
    assert finished != [0, 1, 2], "the items finished in input order: the test proves nothing"
    assert peak_in_flight_by_time(run.log, "each") >= 2


def test_an_empty_loop_completes_at_once_with_an_empty_list(runs: Batch) -> None:
    run = runs["empty_loop"]
    completed(run)
    assert run.step("each")["result"] == []
    assert run.step("each")["stats"] == {"total": 0, "succeeded": 0, "failed": 0}
    assert run.step("after")["result"] == {"got": [], "stats": {"total": 0, "succeeded": 0, "failed": 0}}


def test_a_failed_item_fails_a_sequential_loop_and_the_items_after_it_never_run(runs: Batch) -> None:
    run = runs["failed_item_fails_loop"]
    failed(run)
    each = run.step("each")
    assert each["status"] == "failed"
    assert each["error"]["kind"] == "python_exception"
    assert "item 1" in each["error"]["message"]
    assert [e["loop_index"] for e in of_type(run.log, "step.scheduled", "each")] == [0, 1]
    assert not run.ran("after")
    assert run.doc["error"]["step"] == "each"


def test_a_failed_item_fails_a_parallel_loop(runs: Batch) -> None:
    run = runs["failed_item_parallel"]
    failed(run)
    assert run.step("each")["status"] == "failed"
    assert run.step("each")["error"]["kind"] == "python_exception"


def test_a_best_effort_parallel_loop_records_failed_items_and_counts_them(runs: Batch) -> None:
    run = runs["best_effort_parallel"]
    completed(run)
    stats = {"total": 5, "succeeded": 3, "failed": 2}
    assert run.step("each")["result"] == [10, None, 5, None, 2]
    assert run.step("each")["stats"] == stats
    assert run.step("after")["result"] == {"stats": stats, "results": [10, None, 5, None, 2]}
