"""Step durations for the planner: medians of past successful runs, read from the event log."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control_plane.store.db import Database
from control_plane.store.durations import step_duration_medians
from control_plane.store.events import EventStore
from control_plane.store.migrate import migrate
from engine.protocol.events import Event
from noetl.cli import app
from tests.conftest import EXAMPLES


def _event(execution: str, key: str, type_: str, step: str, ms: float | None, **fields: object) -> Event:
    return Event(event_id=key, idempotency_key=key, execution_id=execution, type=type_,  # type: ignore[arg-type]
                 step=step, duration_ms=ms, **fields)  # type: ignore[arg-type]


async def _record(db: Database, path: str) -> None:
    store = EventStore(db)
    for n, durations in enumerate([(100, 40), (300, 60), (200, 50)]):
        ex = f"ex-{path.replace('/', '-')}-{n}"
        await store.create_execution(ex, playbook_path=path, playbook_version=1, playbook_text="",
                                     payload={})
        await store.append([
            _event(ex, f"{ex}-a", "step.succeeded", "a", durations[0]),
            _event(ex, f"{ex}-f", "step.failed", "a", 9999),  # failures do not count
            _event(ex, f"{ex}-i0", "loop.item.succeeded", "items", durations[1], loop_index=0),
            _event(ex, f"{ex}-i1", "loop.item.succeeded", "items", durations[1] + 10, loop_index=1),
            _event(ex, f"{ex}-d", "step.succeeded", "items", None, derived=True),  # the loop's own outcome
        ])


async def _medians(dsn: str, path: str, other: str) -> tuple[dict[str, float], dict[str, float]]:
    db = await Database.open(dsn, min_size=1, max_size=2)
    try:
        await migrate(db)
        await _record(db, path)
        return await step_duration_medians(db, path), await step_duration_medians(db, other)
    finally:
        await db.close()


def test_medians_of_successful_runs_per_step_and_per_loop_item(pg_dsn: str) -> None:
    medians, none = asyncio.run(_medians(pg_dsn, "demo/plan", "demo/other"))
    assert medians == {"a": 200.0, "items": 55.0}
    assert none == {}


def test_noetl_plan_uses_the_event_log_when_a_stack_is_reachable(pg_dsn: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_medians(pg_dsn, "examples/join", "x"))
    monkeypatch.setenv("NOETL_HOME", str(tmp_path))
    monkeypatch.delenv("NOETL_POOLS", raising=False)
    result = CliRunner().invoke(app, ["plan", str(EXAMPLES / "02_join.yaml"), "--json"],
                                env={"NOETL_PG_DSN": pg_dsn})
    assert result.exit_code == 0, result.stderr
    assert "medians of past successful runs from the event log (2 steps)" in result.stderr
    data = json.loads(result.stdout)
    assert next(s for s in data["steps"] if s["step"] == "a")["duration_ms"] == 200
    unreachable = CliRunner().invoke(app, ["plan", str(EXAMPLES / "02_join.yaml"), "--json"],
                                     env={"NOETL_PG_DSN": "postgresql://nobody@127.0.0.1:1/none"})
    assert unreachable.exit_code == 0
    assert "per-kind defaults (the event log could not be read" in unreachable.stderr
