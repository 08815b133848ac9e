"""Replay (spec 15) and status (spec 4.2) over EVERY execution this e2e session produced.

`check_session(home)` runs once, when the session's stack (the `e2e_stack` fixture in conftest.py) is torn
down, so after every test that used it, whatever the order of the files; a difference fails the run loudly
(an error at that teardown naming each execution and what differs).

Each execution's events are read from the stack's Postgres; its net is rebuilt from the playbook text in
its `execution.started` event; its input events are folded, in seq order, through the pure `fire` from an
empty state. The derived events that produces must equal the derived events the orchestrator recorded
(id, type, step, loop index, payload, result), and the final status must be the recorded terminal event.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control_plane.stack import resolve_ref
from control_plane.store import Store, open_store
from control_plane.store.secret_key import load_secret_key
from engine.net.fire import FireEnv, fire
from engine.net.state import ExecutionState
from engine.net.validate import validate_text
from engine.protocol.events import INPUT_EVENTS, TERMINAL_EVENTS, Event
from tests.harness.polling import poll

SETTLE_S = 60.0  # how long executions still running (none should be) may take to end


@dataclass
class Recorded:
    execution_id: str
    events: list[Event]


def _key(event: Event) -> dict[str, Any]:
    dumped = event.model_dump(mode="json")
    return {k: dumped[k] for k in ("event_id", "type", "step", "loop_index", "payload", "result")}


async def _executions(store: Store) -> list[str]:
    rows = await store.db.fetch_all("SELECT execution_id FROM executions ORDER BY created_at, execution_id")
    return [row["execution_id"] for row in rows]


async def _read_all(home: Path) -> list[Recorded]:
    """Every execution with its events, once none is still running (bounded poll; after SETTLE_S, as they
    are: the terminal-event check then names the ones still running)."""
    dsn = json.loads((home / "dev.json").read_text())["pg_dsn"]
    store = await open_store(dsn, load_secret_key(home))
    last: list[Recorded] = []

    async def settled() -> tuple[list[Recorded]] | None:
        last[:] = [Recorded(x, await store.events.events(x)) for x in await _executions(store)]
        running = [r for r in last if not any(e.type in TERMINAL_EVENTS for e in r.events)]
        return None if running else (last,)

    try:
        await poll(settled, timeout_s=SETTLE_S, what="every execution of the session to end")
    except AssertionError:
        pass  # reported below, per execution, by the terminal-event check
    finally:
        await store.close()
    return last


def _replay(recorded: Recorded) -> tuple[list[str], int]:
    """What differs between the recorded execution and its replay (empty when they agree), and how many
    derived events were compared."""
    events = recorded.events
    if not events:
        return ["it has no events: its execution.started was never recorded"], 0
    started = events[0]
    if started.type != "execution.started":
        return [f"its first event is {started.type}, not execution.started"], 0
    validation = validate_text(str(started.payload.get("playbook", "")), "<replay>")
    if validation.net is None:
        return [f"its playbook no longer validates: {[d.format() for d in validation.errors][:3]}"], 0
    env = FireEnv(resolve_ref=resolve_ref, playbook_path=started.payload.get("path"))
    state = ExecutionState(recorded.execution_id)
    derived: list[Event] = []
    for event in events:  # the store returns them in seq order
        if event.type in INPUT_EVENTS:
            derived.extend(fire(validation.net, state, event, env).events)
    problems = []
    expected = [_key(e) for e in events if e.derived]
    got = [_key(e) for e in derived]
    if got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                     min(len(got), len(expected)))
        problems.append(f"derived events differ at #{first} (replayed {len(got)}, recorded {len(expected)}): "
                        f"replayed {got[first] if first < len(got) else None!r:.600} "
                        f"recorded {expected[first] if first < len(expected) else None!r:.600}")
    terminal = [e.type for e in events if e.type in TERMINAL_EVENTS]
    if terminal and f"execution.{state.status}" != terminal[-1]:
        problems.append(f"replayed status {state.status}, recorded {terminal[-1]}")
    return problems, len(expected)


def _terminal_problems(recorded: list[Recorded]) -> dict[str, list[str]]:
    """Executions that do not end with exactly one terminal event (with their last event types)."""
    problems = {}
    for r in recorded:
        terminal = [e for e in r.events if e.type in TERMINAL_EVENTS]
        if len(terminal) != 1 or not r.events or r.events[-1].type not in TERMINAL_EVENTS:
            problems[r.execution_id] = [e.type for e in r.events[-5:]]
    return problems


def check_session(home: Path) -> int:
    """Every execution recorded under `home` ends with exactly one terminal event, and replaying it
    reproduces its derived events and final status; returns how many executions were checked, raises
    AssertionError naming every execution that fails either check."""
    recorded = asyncio.run(_read_all(home))
    if not recorded:
        return 0
    unended = _terminal_problems(recorded)
    differ: dict[str, list[str]] = {}
    compared = 0
    for r in recorded:
        found, count = _replay(r)
        compared += count
        if found:
            differ[r.execution_id] = found
    assert not unended, (f"replay check: {len(unended)} of {len(recorded)} executions of the e2e session "
                         f"do not end with exactly one terminal event (last event types): {unended}")
    assert not differ, (f"replay check: replaying {len(differ)} of {len(recorded)} executions of the e2e "
                        f"session differs from what was recorded:\n{json.dumps(differ, indent=1)[:6000]}")
    assert compared >= 2 * len(recorded), (  # at least a scheduled step and the terminal event each
        f"replay check: only {compared} derived events compared for {len(recorded)} executions")
    return len(recorded)
