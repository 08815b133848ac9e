"""Cursor loops (spec 6.1) on a real runtime: claimers on workers draining a work queue in Postgres, and a
worker killed with SIGKILL mid-run whose claimers are replaced without losing a row."""

from __future__ import annotations

import os
import signal
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from control_plane.stack import Stack
from engine.net.fire import FireEnv, fire
from engine.net.state import ExecutionState
from engine.net.validate import validate_text
from engine.protocol.events import INPUT_EVENTS, Event
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio


def make_queue(dsn: str, table: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, status text NOT NULL DEFAULT 'pending', "
                     "claimed_at timestamptz, claims integer NOT NULL DEFAULT 0, "
                     "done integer NOT NULL DEFAULT 0)")
        conn.execute(f"INSERT INTO {table} (id) SELECT g FROM generate_series(1, {rows}) g")


def queue_state(dsn: str, table: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FILTER (WHERE status = 'done'), count(*), "
                           f"coalesce(min(done), 0), coalesce(max(claims), 0) FROM {table}").fetchone()
    assert row is not None
    return {"done": row[0], "rows": row[1], "least_done": row[2], "most_claims": row[3]}


def playbook(name: str, body: str) -> str:
    return (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: tests/{name}}}\n"
            + textwrap.dedent(body))


def replay_problems(events: list[Event]) -> list[str]:
    """The recorded derived events against those of folding the input events through fire again."""
    started = events[0]
    net = validate_text(str(started.payload["playbook"])).net
    assert net is not None
    state = ExecutionState(started.execution_id)
    derived: list[Event] = []
    for event in events:
        if event.type in INPUT_EVENTS:
            derived.extend(fire(net, state, event, FireEnv(playbook_path=started.payload.get("path"))).events)
    keys = ("event_id", "type", "step", "loop_index", "payload", "result")
    replayed = [{k: e.model_dump(mode="json")[k] for k in keys} for e in derived]
    recorded = [{k: e.model_dump(mode="json")[k] for k in keys} for e in events if e.derived]
    return [] if replayed == recorded else [f"replayed {len(replayed)} derived events, "
                                            f"recorded {len(recorded)}"]


async def test_claimers_in_one_process_drain_a_queue_claiming_several_rows_at_a_time(
        stack: Stack, pg_dsn: str) -> None:
    assert stack.store is not None and stack.executions is not None
    table = f"q_{uuid.uuid4().hex[:8]}"
    make_queue(pg_dsn, table, 40)
    await stack.store.credentials.set("queue_db", "postgres", {"dsn": pg_dsn})
    registered = await stack.executions.register(playbook(f"cursor_{table}", f"""\
        workflow:
          - step: work
            loop:
              cursor:
                kind: postgres
                auth: queue_db
                claim: |
                  UPDATE {table} SET status = 'claimed', claimed_at = clock_timestamp(), claims = claims + 1
                  WHERE id IN (SELECT id FROM {table} WHERE status = 'pending' ORDER BY id
                               FOR UPDATE SKIP LOCKED LIMIT {{{{ __frame_max_rows }}}})
                  RETURNING id
              iterator: job
              spec: {{mode: cursor, max_in_flight: 3, frame: {{max_rows: 4}}}}
            tool:
              - name: mark
                kind: postgres
                auth: queue_db
                command: >-
                  UPDATE {table} SET status = 'done', done = done + 1 WHERE id = {{{{ job.id }}}} RETURNING id
              - name: shape
                kind: python
                input: {{id: "{{{{ mark.rows[0].id }}}}", claimer: "{{{{ iter._claimer }}}}"}}
                code: "result = {{'id': id, 'claimer': claimer}}"
                set: {{ctx.last_id: "{{{{ output.data.id }}}}"}}
            set: {{ctx.stats: "{{{{ work.stats }}}}"}}
        """))
    execution_id = await stack.executions.start(registered.path)
    summary = await stack.executions.wait(execution_id, timeout_s=90)
    assert summary["status"] == "completed", summary["error"]["message"]
    result = summary["steps"]["work"]["result"]
    assert result["stats"] == {"claimed": 40, "succeeded": 40, "failed": 0}
    assert sorted(r["id"] for r in result["results"]) == list(range(1, 41))
    assert {r["claimer"] for r in result["results"]} <= {0, 1, 2}
    assert queue_state(pg_dsn, table) == {"done": 40, "rows": 40, "least_done": 1, "most_claims": 1}
    events = await stack.store.events.events(execution_id)
    items = [e for e in events if e.type == "loop.item.succeeded"]
    assert len(items) == 40
    # claim order: several rows of one claim keep their order, claims in the order they were made
    order = sorted(items, key=lambda e: (e.payload["cursor"]["at"], e.payload["cursor"]["claimer"],
                                         e.payload["cursor"]["claim"], e.payload["cursor"]["row"]))
    assert [r["id"] for r in result["results"]] == [e.result.data["id"] for e in order]  # type: ignore[union-attr]
    assert replay_problems(events) == []


CRASH_ROWS = 500
LEASE = "2 seconds"  # a claimed row whose claimer went quiet this long is claimed again


def crash_playbook(name: str, table: str) -> str:
    # When no row is pending but some are claimed, the claim first waits until the oldest claimed row's
    # lease has run out (bounded): a claimer never stops while a dead claimer's row can still be taken.
    return playbook(name, f"""\
        workload: {{gate: '', waiting: ''}}
        workflow:
          - step: work
            loop:
              cursor:
                kind: postgres
                auth: crash_db
                claim: |
                  SELECT pg_sleep(least(3, greatest(0, extract(epoch FROM m + interval '{LEASE}'
                                                               - clock_timestamp()))))
                  FROM (SELECT min(claimed_at) AS m FROM {table} WHERE status = 'claimed') s
                  WHERE s.m IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {table} WHERE status = 'pending');
                  UPDATE {table} SET status = 'claimed', claimed_at = clock_timestamp(), claims = claims + 1
                  WHERE id IN (SELECT id FROM {table}
                               WHERE status = 'pending'
                                  OR (status = 'claimed'
                                      AND claimed_at < clock_timestamp() - interval '{LEASE}')
                               ORDER BY id FOR UPDATE SKIP LOCKED LIMIT {{{{ __frame_max_rows }}}})
                  RETURNING id
              iterator: job
              spec:
                mode: cursor
                max_in_flight: 4
                frame: {{max_rows: 1, lease_seconds: 6, heartbeat_seconds: 1}}
            tool:
              - name: gate
                kind: python
                input:
                  id: "{{{{ job.id }}}}"
                  gate: "{{{{ workload.gate }}}}"
                  waiting: "{{{{ workload.waiting }}}}"
                code: |
                  import os, time
                  if not os.path.exists(gate):
                      with open(os.path.join(waiting, str(id)), "w") as f:
                          f.write(str(os.getppid()))
                      deadline = time.time() + 60
                      while not os.path.exists(gate) and time.time() < deadline:
                          time.sleep(0.02)
                  result = id
              - name: mark
                kind: postgres
                auth: crash_db
                command: >-
                  UPDATE {table} SET status = 'done', done = done + 1 WHERE id = {{{{ job.id }}}} RETURNING id
        """)


async def test_a_worker_killed_mid_run_has_its_claimers_replaced_and_no_row_is_lost(
        client: Stack, spawn: Any, pg_dsn: str, tmp_path: Path) -> None:
    assert client.store is not None and client.executions is not None
    table = f"crash_{uuid.uuid4().hex[:8]}"
    make_queue(pg_dsn, table, CRASH_ROWS)
    await client.store.credentials.set("crash_db", "postgres", {"dsn": pg_dsn})
    gate, waiting = tmp_path / "gate", tmp_path / "waiting"
    gate.touch()
    waiting.mkdir()
    spawn("server", "start")
    workers = {p.pid: p for p in (spawn("worker", "start", "--concurrency", "4") for _ in range(2))}
    registered = await client.executions.register(crash_playbook(f"cursor_{table}", table))
    execution_id = await client.executions.start(registered.path,
                                                 payload={"gate": str(gate), "waiting": str(waiting)})
    await poll(lambda: queue_state(pg_dsn, table)["done"] >= 100, timeout_s=120, what="100 rows to be done")
    gate.unlink()  # every claimer now stops at its next row, before it marks the row done
    await poll(lambda: len(list(waiting.iterdir())) == 4, timeout_s=60,
               what="the 4 claimers to wait at the gate")
    owners = {int(p.read_text()) for p in waiting.iterdir()}
    assert owners <= set(workers), (owners, set(workers))  # the claimers run in the worker processes
    victim = workers[min(owners)]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    gate.touch()
    summary = await client.executions.wait(execution_id, timeout_s=180)
    assert summary["status"] == "completed", summary["error"]
    state = queue_state(pg_dsn, table)
    assert (state["done"], state["rows"], state["least_done"]) == (CRASH_ROWS, CRASH_ROWS, 1)  # none lost
    assert state["most_claims"] >= 2  # the dead claimers' rows were claimed again
    result = summary["steps"]["work"]["result"]
    stats = result["stats"]
    assert stats["claimed"] == stats["succeeded"] + stats["failed"] == len(result["results"])
    assert stats["failed"] == 0
    assert {r["rows"][0]["id"] for r in result["results"]} == set(range(1, CRASH_ROWS + 1))
    events = await client.store.events.events(execution_id)
    items = [e for e in events if e.type == "loop.item.succeeded"]
    assert len(items) == stats["succeeded"]
    replaced = {e.command_id for e in events if e.type == "step.started" and e.payload.get("delivery", 1) > 1}
    assert replaced and len(replaced) == sum(1 for p in waiting.iterdir() if int(p.read_text()) == victim.pid)
    assert any(e.payload["cursor"]["delivery"] > 1 for e in items)  # the replacements' rows were recorded
    stopped = [e for e in events if e.type == "loop.claimer.stopped"]
    assert len(stopped) == 4 and all(e.result is not None and e.result.status == "ok" for e in stopped)
    assert replay_problems(events) == []
