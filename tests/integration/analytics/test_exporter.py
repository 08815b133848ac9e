"""The analytics exporter: the event log of real executions -> chDB (through clickhouse-connect) and
Parquet; a restart mid-way (in-process and a killed `noetl export run`) leaves no duplicates and no gaps;
a transaction that commits out of order is never skipped; `noetl export status --json`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.dataset as ds
import pytest

from agents.analytics.clickhouse import ClickHouseSink
from agents.analytics.exporter import Exporter
from agents.analytics.parquet import ParquetSink
from agents.analytics.rows import Rows
from control_plane.services.exports import ExportFeed
from control_plane.stack import Stack
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def steps(name: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}, path: tests/{name}}}
        workflow:
          - step: extract
            tool: {{kind: python, code: "result = {{'rows': 3}}"}}
            next: fan_out
          - step: fan_out
            loop: {{in: "{{{{ [1, 2, 3] }}}}", iterator: item, spec: {{mode: parallel}}}}
            tool: {{kind: noop, result: "{{{{ item * 2 }}}}"}}
        """)


def dividing(name: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}, path: tests/{name}}}
        workflow:
          - step: summarize
            tool: {{kind: python, code: "result = {{'mean': 10 / 0}}"}}
        """)


async def run(stack: Stack, text: str, payload: dict[str, Any] | None = None) -> str:
    assert stack.executions is not None
    path = (await stack.executions.register(text)).path
    execution_id = await stack.executions.start(path, payload=payload or {})
    await stack.executions.wait(execution_id, timeout_s=60)
    return execution_id


async def three_runs(stack: Stack, tmp_path: Path) -> dict[str, str]:
    """ok: two steps, the second a loop of 3; retried: 2 failed attempts then success; failed: 1/0."""
    uid = uuid.uuid4().hex[:8]
    retry = (EXAMPLES / "06_pipeline_retry.yaml").read_text().replace("pipeline_retry", f"retry_{uid}")
    return {"ok": await run(stack, steps(f"ok_{uid}")),
            "retried": await run(stack, retry, {"counter_file": str(tmp_path / f"counter_{uid}")}),
            "failed": await run(stack, dividing(f"failed_{uid}"))}


def logged(dsn: str) -> set[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        return {(x, int(s)) for x, s in conn.execute("SELECT execution_id, seq FROM events").fetchall()}


def parquet_rows(directory: Path, table: str) -> list[dict[str, Any]]:
    if not (directory / table).exists():
        return []
    return ds.dataset(directory / table, format="parquet", partitioning="hive").to_table().to_pylist()


def chdb_sink(tag: str) -> ClickHouseSink:
    return ClickHouseSink("chdb://", database=f"t_{tag}_{uuid.uuid4().hex[:8]}")


async def test_every_event_of_real_executions_lands_in_the_three_tables_of_both_sinks(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    assert stack.store is not None
    ids = await three_runs(stack, tmp_path)
    clickhouse, parquet = chdb_sink("all"), ParquetSink(tmp_path / "export")
    exporter = Exporter(ExportFeed(stack.store), [clickhouse, parquet], name="all")
    try:
        assert await exporter.catch_up(limit=7) > 0
        log = logged(runtime_env["NOETL_PG_DSN"])
        db = clickhouse.database
        exported = {(x, int(s))
                    for x, s in clickhouse.query(f"SELECT execution_id, seq FROM {db}.events FINAL")}
        assert exported == log
        assert clickhouse.query(f"SELECT count() FROM {db}.events FINAL") == [(len(log),)]
        # executions: one row each, with their outcome and playbook
        executions = {r[0]: r[1:] for r in clickhouse.query(
            "SELECT execution_id, status, playbook_path, error_kind, duration_ms > 0 "
            f"FROM {db}.executions FINAL")}
        assert {k: v[0] for k, v in executions.items()} == {
            ids["ok"]: "completed", ids["retried"]: "completed", ids["failed"]: "failed"}
        assert executions[ids["failed"]][1].startswith("tests/failed_") and executions[ids["ok"]][3] == 1
        # step runs: one per command and attempt; the retried step has 3 attempts, the loop 3 items
        runs = clickhouse.query("SELECT execution_id, step, loop_index, attempt, status, error_kind, "
                                f"worker, run_ms >= 0, queue_ms >= 0 FROM {db}.step_runs FINAL "
                                "ORDER BY execution_id, step, loop_index, attempt")
        fetch = [r for r in runs if r[0] == ids["retried"]]
        assert [(r[1], r[3], r[4]) for r in fetch] == [("fetch", 1, "failed"), ("fetch", 2, "failed"),
                                                       ("fetch", 3, "succeeded")]
        assert fetch[0][5] != "" and all(r[6] and r[7] for r in fetch)
        ok = [r for r in runs if r[0] == ids["ok"]]
        assert sorted((r[1], r[2], r[4]) for r in ok if r[1] == "fan_out") == [
            ("fan_out", i, "succeeded") for i in range(3)]
        assert [(r[1], r[4]) for r in ok if r[1] == "extract"] == [("extract", "succeeded")]
        assert [(r[1], r[4], r[5]) for r in runs if r[0] == ids["failed"]] == [
            ("summarize", "failed", "python_exception")]
        signatures = clickhouse.query(f"SELECT error_signature, count() FROM {db}.events FINAL "
                                      "WHERE type = 'step.failed' GROUP BY error_signature")
        assert len(signatures) == 1 and signatures[0][0].startswith("python_exception: ")
        # the Parquet sink holds the same rows
        events = parquet_rows(tmp_path / "export", "events")
        assert {(r["execution_id"], r["seq"]) for r in events} == log and len(events) == len(log)
        assert {r["execution_id"]: r["status"] for r in parquet_rows(tmp_path / "export", "executions")} == {
            ids["ok"]: "completed", ids["retried"]: "completed", ids["failed"]: "failed"}
        assert len(parquet_rows(tmp_path / "export", "step_runs")) == len(runs) == 3 + 4 + 1
        files = list((tmp_path / "export" / "events").rglob("*.parquet"))
        assert files and all(p.parent.name.startswith("date=") for p in files)
        status = (await ExportFeed(stack.store).status("all")).to_dict()
        assert status["lag_events"] == 0 and status["cursor"] is not None and status["last_error"] is None
        assert status["rows_exported"]["events"] == len(log) and status["rows_exported"]["executions"] == 3
    finally:
        exporter.close()


class Crash(BaseException):
    """The process dies (not an Exception: nothing catches it on the way out)."""


class CrashAfterWrite:
    """A real sink that dies right after writing its `n`-th batch, before the cursor is saved."""

    def __init__(self, sink: Any, n: int) -> None:
        self.sink, self.n, self.description = sink, n, sink.description

    def write(self, batch_id: str, rows: Rows) -> None:
        self.sink.write(batch_id, rows)
        self.n -= 1
        if self.n == 0:
            raise Crash(batch_id)

    def close(self) -> None:
        pass


async def test_a_restart_after_a_crash_mid_batch_leaves_no_duplicates_and_no_gaps(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    assert stack.store is not None
    await three_runs(stack, tmp_path)
    clickhouse, parquet = chdb_sink("crash"), ParquetSink(tmp_path / "export")
    feed = ExportFeed(stack.store)
    try:
        first = Exporter(feed, [CrashAfterWrite(clickhouse, 3), CrashAfterWrite(parquet, 3)], name="crash")
        with pytest.raises(Crash):
            await first.catch_up(limit=5)
        position = await feed.position("crash")
        assert position["pending"] is not None  # the third batch was written but not recorded as done
        db = clickhouse.database
        raw_before = clickhouse.query(f"SELECT count() FROM {db}.events")[0][0]
        second = Exporter(feed, [clickhouse, parquet], name="crash")
        await second.catch_up(limit=5)
        log = logged(runtime_env["NOETL_PG_DSN"])
        pairs = [(x, int(s)) for x, s in clickhouse.query(f"SELECT execution_id, seq FROM {db}.events FINAL")]
        assert sorted(pairs) == sorted(log) and len(pairs) == len(set(pairs))  # no gap, no duplicate
        # the pending batch was written twice (before the crash and after): FINAL folds the copies
        assert clickhouse.query(f"SELECT count() FROM {db}.events")[0][0] >= raw_before
        events = parquet_rows(tmp_path / "export", "events")
        parquet_pairs = [(r["execution_id"], r["seq"]) for r in events]
        assert len(parquet_pairs) == len(set(parquet_pairs)) and set(parquet_pairs) == log
        executions = [r["execution_id"] for r in parquet_rows(tmp_path / "export", "executions")]
        assert len(executions) == len(set(executions)) == 3
        runs = [(r["command_id"], r["attempt"]) for r in parquet_rows(tmp_path / "export", "step_runs")]
        assert len(runs) == len(set(runs)) == 8
        assert await second.catch_up() == 0
    finally:
        clickhouse.close()


async def test_a_transaction_that_commits_out_of_order_is_never_skipped(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    """A writer that began before later, already committed appends holds the export back until it ends;
    then its rows are exported (a cursor on recorded_at or an auto-increment id would have passed them)."""
    assert stack.store is not None
    dsn = runtime_env["NOETL_PG_DSN"]
    earlier = await run(stack, dividing(f"early_{uuid.uuid4().hex[:8]}"))
    slow = psycopg.connect(dsn)
    try:
        slow.execute("SELECT pg_current_xact_id()")  # its id is taken now: lower than what follows
        later = await run(stack, steps(f"late_{uuid.uuid4().hex[:8]}"))
        parquet = ParquetSink(tmp_path / "export")
        exporter = Exporter(ExportFeed(stack.store), [parquet], name="order")
        await exporter.catch_up()
        exported = {(r["execution_id"], r["seq"]) for r in parquet_rows(tmp_path / "export", "events")}
        assert all(x != later for x, _ in exported)  # held back below the open transaction
        slow.execute("SELECT * FROM noetl_append_events(ARRAY[1], ARRAY[%s], ARRAY['late-evt'], "
                     "ARRAY['late-key'], ARRAY['ctx.updated'], ARRAY[NULL::text], ARRAY[NULL::int], "
                     "ARRAY[true], ARRAY[now()], "
                     "ARRAY[%s::jsonb])", (earlier, json.dumps({
                         "event_id": "late-evt", "idempotency_key": "late-key", "execution_id": earlier,
                         "type": "ctx.updated", "derived": True, "payload": {}})))
        slow.commit()
        await exporter.catch_up()
        events = parquet_rows(tmp_path / "export", "events")
        pairs = [(r["execution_id"], r["seq"]) for r in events]
        assert set(pairs) == logged(dsn) and len(pairs) == len(set(pairs))
        assert any(r["event_id"] == "late-evt" for r in events)
    finally:
        slow.close()


def noetl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "noetl.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


async def test_a_killed_noetl_export_run_resumes_and_status_shows_the_cursor_and_lag(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    assert stack.store is not None
    await three_runs(stack, tmp_path)
    await three_runs(stack, tmp_path)
    dsn = runtime_env["NOETL_PG_DSN"]
    log = logged(dsn)
    env = {**runtime_env, "NOETL_EXPORT_DIR": str(tmp_path / "export")}
    before = noetl(env, "export", "status", "--json")
    assert before.returncode == 0, before.stderr
    doc = json.loads(before.stdout)
    assert doc["cursor"] is None and doc["lag_events"] == len(log) and doc["lag_seconds"] > 0
    assert doc["configured_sinks"] == [f"parquet {tmp_path / 'export'}"]
    # a follower exporting 1 event a batch (a hundred batches or more), killed (SIGKILL) once it exported some
    with open(tmp_path / "follower.log", "wb") as out:  # the process has its own copy
        follower = subprocess.Popen([sys.executable, "-m", "noetl.cli", "export", "run", "--batch", "1",
                                     "--poll", "0.05"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    try:
        feed = ExportFeed(stack.store)

        async def some_exported() -> bool:
            return (await feed.status("analytics")).rows_exported.get("events", 0) >= 5

        await poll(some_exported, timeout_s=60, what="the follower to export a few batches")
    finally:
        follower.send_signal(signal.SIGKILL)
        follower.wait(timeout=30)
    middle = json.loads(noetl(env, "export", "status", "--json").stdout)
    assert middle["cursor"] is not None and middle["sinks"] == [f"parquet {tmp_path / 'export'}"]
    assert middle["lag_events"] > 0  # killed mid-way
    done = noetl(env, "export", "run", "--once")
    assert done.returncode == 0, done.stderr
    after = json.loads(noetl(env, "export", "status", "--json").stdout)
    assert after["lag_events"] == 0 and after["lag_seconds"] == 0 and after["last_export_at"]
    assert after["pending_batch"] is None
    pairs = [(r["execution_id"], r["seq"]) for r in parquet_rows(tmp_path / "export", "events")]
    assert len(pairs) == len(set(pairs)) and set(pairs) == log
    assert len(parquet_rows(tmp_path / "export", "executions")) == 6
    assert not list((tmp_path / "export").rglob("*.tmp"))
    human = noetl(env, "export", "status")
    assert human.returncode == 0 and "lag: 0 events" in human.stdout


async def test_an_unreachable_clickhouse_keeps_the_cursor_and_status_shows_the_error_without_the_password(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    assert stack.store is not None
    await run(stack, dividing(f"unreached_{uuid.uuid4().hex[:8]}"))
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**runtime_env, "NOETL_CLICKHOUSE_URL": f"http://noetl:s3cr3t-pw@127.0.0.1:{port}/analytics"}
    failed = noetl(env, "export", "run", "--once")
    assert failed.returncode == 1 and "s3cr3t-pw" not in failed.stderr + failed.stdout
    assert f"127.0.0.1:{port}" in failed.stderr and "NOETL_CLICKHOUSE_URL" in failed.stderr
    status = noetl(env, "export", "status", "--json")
    assert "s3cr3t-pw" not in status.stdout
    doc = json.loads(status.stdout)
    assert doc["cursor"] is None and doc["lag_events"] > 0 and doc["pending_batch"] is not None
    assert f"127.0.0.1:{port}" in doc["last_error"] and "***" in doc["sinks"][0]
    assert doc["configured_sinks"] == [f"clickhouse http://noetl:***@127.0.0.1:{port}/analytics"]
    # the in-process follower retries with backoff, records the error, and keeps the batch pending
    feed = ExportFeed(stack.store)
    exporter = Exporter(feed, [ClickHouseSink(env["NOETL_CLICKHOUSE_URL"])], name="retrying")
    stop = asyncio.Event()
    follower = asyncio.create_task(exporter.run(stop, poll_s=0.05))
    try:
        await poll(lambda: exporter.failures >= 3, timeout_s=30, what="three failed attempts")
    finally:
        stop.set()
        await asyncio.wait_for(follower, 30)
    status = await feed.status("retrying")
    assert status.last_error is not None and "s3cr3t-pw" not in status.last_error
    assert status.position["pending"] is not None and status.rows_exported == {}


async def test_events_appended_before_migration_0010_are_exported_first_and_once(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    assert stack.store is not None
    dsn = runtime_env["NOETL_PG_DSN"]
    old = await run(stack, dividing(f"old_{uuid.uuid4().hex[:8]}"))
    new = await run(stack, steps(f"new_{uuid.uuid4().hex[:8]}"))
    with psycopg.connect(dsn, autocommit=True) as conn:  # the old run's rows as the migration found them
        conn.execute("SET session_replication_role = replica")  # past the append-only guard, here only
        conn.execute("UPDATE events SET txid = NULL WHERE execution_id = %s", (old,))
    feed = ExportFeed(stack.store)
    assert (await feed.status("legacy")).lag_events == len(logged(dsn))
    exporter = Exporter(feed, [ParquetSink(tmp_path / "export")], name="legacy")
    await exporter.run_once(limit=2)
    first = parquet_rows(tmp_path / "export", "events")
    assert {r["execution_id"] for r in first} == {old} and len(first) == 2
    await exporter.catch_up(limit=2)
    pairs = [(r["execution_id"], r["seq"]) for r in parquet_rows(tmp_path / "export", "events")]
    assert len(pairs) == len(set(pairs)) and set(pairs) == logged(dsn)
    assert {r["execution_id"] for r in parquet_rows(tmp_path / "export", "executions")} == {old, new}
    assert (await feed.status("legacy")).lag_events == 0


async def test_two_exporters_of_the_same_name_never_write_a_row_twice(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    """A server's exporter and `noetl export run` at once: the cursor moves by compare and set, so their
    batches never overlap (different batch sizes would otherwise write the same rows under two ids)."""
    assert stack.store is not None
    await three_runs(stack, tmp_path)
    sink = ParquetSink(tmp_path / "export")
    one = Exporter(ExportFeed(stack.store), [sink], name="shared")
    two = Exporter(ExportFeed(stack.store), [sink], name="shared")

    async def until_done(exporter: Exporter, limit: int) -> None:
        for _ in range(500):
            await exporter.run_once(limit)
            if (await exporter.feed.status("shared")).lag_events == 0:
                return
        raise AssertionError("the exporters did not finish within 500 rounds")

    await asyncio.gather(until_done(one, 2), until_done(two, 3))
    pairs = [(r["execution_id"], r["seq"]) for r in parquet_rows(tmp_path / "export", "events")]
    assert len(pairs) == len(set(pairs)) and set(pairs) == logged(runtime_env["NOETL_PG_DSN"])
    executions = [r["execution_id"] for r in parquet_rows(tmp_path / "export", "executions")]
    assert len(executions) == len(set(executions)) == 3
