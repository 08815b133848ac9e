"""Playbook bodies that several test packages run: a step that holds until the test lets it go."""

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
