"""Playbooks that several test packages use: a step held until the test lets it go, a canonical spelling."""

from __future__ import annotations

from pathlib import Path


def held_until(release: Path, *, step: str = "wait", deadline_s: float | None = None) -> str:
    """A workflow of one python step, `step`, that runs until the file `release` exists (or, with
    `deadline_s`, until that many seconds have passed) and then gives "released": something to hold
    running, to watch, or to cancel."""
    until = f"not os.path.exists({str(release)!r})"
    if deadline_s is None:
        prologue, condition = "", until
    else:
        prologue, condition = f"deadline = time.monotonic() + {deadline_s}\n        ", \
            f"{until} and time.monotonic() < deadline"
    return f"""\
workflow:
  - step: {step}
    tool:
      kind: python
      code: |
        import os, time
        {prologue}while {condition}:
            time.sleep(0.05)
        result = "released"
"""


# examples/10_short_forms.yaml spelled without short forms: both must load to the same model
SHORT_FORMS_CANONICAL = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: short_forms, path: examples/short_forms}
workload: {n: 3, limit: 5}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'n': 1}"}
    next:
      spec: {mode: exclusive}
      arcs:
        - step: big
          when: "{{ workload.n > workload.limit }}"
          set: {ctx.value: "{{ workload.n }}"}
        - step: small
  - step: big
    input: {value: "{{ ctx.value }}"}
    tool: {kind: python, code: "result = f'big {value}'"}
    next: {arcs: [{step: done}]}
  - step: small
    tool: {kind: noop}
    next: {arcs: [{step: done}]}
  - step: done
    tool: {kind: noop}
"""
