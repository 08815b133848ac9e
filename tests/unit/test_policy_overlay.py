"""Overlays laid over a playbook: the patched playbook, the net the engine compiles, the catalog untouched."""

from __future__ import annotations

from engine.dsl.overlay import apply_overlays
from engine.net.compile import compile_net
from engine.net.fire import FireEnv, fire
from engine.net.state import ExecutionState
from engine.net.validate import validate_text
from engine.protocol.events import Event
from policies.apply import merged, step_info
from policies.model import OverlayChange

TEXT = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: overlays}
workflow:
  - step: fetch
    tool:
      kind: python
      code: "result = 1"
      timeout: 5
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' and output.error.kind == 'auth' }}"
              then: {do: fail}
    next: each
  - step: each
    loop: {in: [1, 2, 3], iterator: i, spec: {mode: parallel}}
    tool: {kind: noop}
    spec: {resources: {cpu: 2}}
"""
RETRY = {"when": "{{ output.status == 'error' }}", "then": {"do": "retry", "attempts": 3, "delay": 0.5}}


def playbook():  # type: ignore[no-untyped-def]
    result = validate_text(TEXT)
    assert result.playbook is not None
    return result.playbook


def test_each_field_lands_where_the_engine_reads_it() -> None:
    original = playbook()
    patched, notes = apply_overlays(original, {
        "fetch": {"retry": RETRY, "timeout_s": 60, "pool": "big", "prefer": ["a100"], "require": ["x86"]},
        "each": {"max_in_flight": 2}})
    assert notes == []
    fetch = patched.step("fetch")
    assert fetch.spec.timeout == 60 and fetch.tool[0].timeout == 60  # both limits: the smaller applies
    rules = fetch.tool[0].rules
    assert rules[0].then is not None and rules[0].then.do == "retry" and rules[0].then.attempts == 3
    assert rules[1].then is not None and rules[1].then.do == "fail"  # the playbook's own rule stays, after
    assert fetch.spec.resources is not None
    assert (fetch.spec.resources.pool, fetch.spec.resources.prefer, fetch.spec.resources.require) == (
        "big", ["a100"], ["x86"])
    each = patched.step("each")
    assert each.loop is not None and each.loop.spec.max_in_flight == 2 and each.loop.spec.mode == "parallel"
    assert each.spec.resources is not None and each.spec.resources.cpu == 2  # untouched fields stay
    assert original.step("fetch").spec.timeout is None  # the parsed catalog playbook is not changed


def test_the_engine_dispatches_with_the_overlay() -> None:
    patched, _ = apply_overlays(playbook(), {"fetch": {"timeout_s": 60, "pool": "big", "retry": RETRY}})
    net = compile_net(patched)
    started = Event(event_id="e1", idempotency_key="k1", execution_id="x1", type="execution.started",
                    payload={"playbook": TEXT})
    decision = fire(net, ExecutionState("x1"), started, FireEnv())
    command = decision.commands[0]
    assert (command.pool, command.timeout_s) == ("big", 60.0)  # type: ignore[union-attr]
    assert command.tasks[0]["spec"]["policy"]["rules"][0]["then"]["do"] == "retry"  # type: ignore[union-attr]


def test_what_does_not_apply_is_skipped_with_a_note_never_raised() -> None:
    original = playbook()
    patched, notes = apply_overlays(original, {"gone": {"timeout_s": 5}, "fetch": {"max_in_flight": 3,
                                                                                   "code": "x"}})
    assert any("no such step" in n for n in notes)
    assert any("has no loop" in n for n in notes) and any("'code'" in n for n in notes)
    broken, notes = apply_overlays(original, {"fetch": {"timeout_s": -1}})
    assert broken is original and "does not validate" in notes[-1]
    same, notes = apply_overlays(original, {})
    assert same is original and notes == []


def test_merged_versions_and_step_info() -> None:
    change = OverlayChange.model_validate({"timeout_s": 90})
    assert merged({"retry": RETRY, "timeout_s": 60}, change) == {"retry": RETRY, "timeout_s": 90}
    info = step_info("p", playbook(), "fetch", {"timeout_s": 90}, 2)
    assert (info.exists, info.timeout_s, info.overlay_version, info.has_loop) == (True, 90.0, 2, False)
    each = step_info("p", playbook(), "each")
    assert (each.has_loop, each.loop_parallel, each.needs) == (True, True, {"cpu": 2.0})
    assert not step_info("p", playbook(), "nope").exists
