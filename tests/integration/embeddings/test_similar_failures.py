"""Index real failing executions and find similar failures; the indexer resumes from its cursor; the CLI."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from agents.embeddings.embedder import MiniLMEmbedder
from agents.embeddings.index import VectorIndex
from agents.embeddings.indexer import Indexer
from agents.embeddings.runtime import EmbeddingsRuntime
from agents.embeddings.similar import SimilarFailures
from control_plane.services.indexing import IndexingFeed
from control_plane.stack import Stack
from tests.harness.polling import poll

pytestmark = pytest.mark.anyio

# the CLI's app, with the similar commands whether or not noetl/cli.py registers them yet
CLI = ("from noetl.cli import app, main\nfrom noetl.commands import similar\n"
       "if not any(c.name == 'similar' for c in app.registered_commands):\n"
       "    similar.register(app)\nmain()\n")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connecting(name: str, step: str) -> str:
    """A playbook whose step connects to workload.port unless workload.ok: refused, error kind connection."""
    return textwrap.dedent(f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {name}, path: tests/{name}}}
        workload: {{port: 1, ok: false}}
        workflow:
          - step: {step}
            tool:
              kind: python
              input: {{port: "{{{{ workload.port }}}}", ok: "{{{{ workload.ok }}}}"}}
              code: |
                import socket
                if not ok:
                    socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
                result = {{"rows": 3}}
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


async def run(stack: Stack, text: str, payload: dict[str, Any] | None = None, *,
              path: str | None = None) -> str:
    """Register `text` and run it (or run the registered `path` again) to its end."""
    assert stack.executions is not None
    if path is None:
        path = (await stack.executions.register(text)).path
    execution_id = await stack.executions.start(path, payload=payload or {})
    await stack.executions.wait(execution_id, timeout_s=60)
    return execution_id


async def failing_runs(stack: Stack) -> dict[str, str]:
    """orders fails (refused), invoices fails (refused) then succeeds, report fails (ZeroDivisionError)."""
    uid = uuid.uuid4().hex[:8]
    port = closed_port()
    ids = {"orders": await run(stack, connecting(f"orders_{uid}", "load_orders"), {"port": port}),
           "invoices": await run(stack, connecting(f"invoices_{uid}", "fetch_invoices"), {"port": port})}
    ids["report"] = await run(stack, dividing(f"report_{uid}"))
    ids["invoices_again"] = await run(stack, "", {"port": port, "ok": True}, path=f"tests/invoices_{uid}")
    return ids


async def test_similar_failures_rank_the_same_kind_first_with_what_happened_next(
        stack: Stack, embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    assert stack.store is not None
    ids = await failing_runs(stack)
    feed = IndexingFeed(stack.store)
    with VectorIndex.open(path=tmp_path / "qdrant") as index:
        indexed = await Indexer(feed, index, embedder, name="t").catch_up()
        assert indexed == index.count("failure") + index.count("execution") + index.count("playbook")
        assert index.count("failure") == 3 and index.count("execution") == 4 and index.count("playbook") == 3
        similar = SimilarFailures(index, embedder, feed)
        found = await similar.for_execution(ids["orders"], limit=5)
        assert [f.execution_id for f in found] == [ids["invoices"], ids["report"]]  # never the same execution
        first, second = found
        assert first.step == "fetch_invoices" and first.error_kind == "connection"
        assert second.error_kind == "python_exception"
        assert 0 < second.score < first.score <= 1
        assert first.next.later_run_succeeded is True
        assert first.next.later_execution_id == ids["invoices_again"]
        assert first.next.later_step_succeeded is True and first.next.retried_and_succeeded is False
        assert second.next.later_run_succeeded is None and second.next.later_execution_id is None
        assert first.to_dict()["next"]["later_execution_id"] == ids["invoices_again"]
        # by step: the step's own failures; a step that did not fail falls back to all of them
        by_step = await similar.for_execution(ids["orders"], step="load_orders")
        assert by_step[0].execution_id == ids["invoices"]
        # a text search
        [hit, *_] = await similar.search("ZeroDivisionError: division by zero", limit=3)
        assert hit.execution_id == ids["report"] and hit.step == "summarize"


async def test_the_indexer_resumes_from_its_cursor_and_never_adds_a_point_twice(
        stack: Stack, embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    assert stack.store is not None
    ids = await failing_runs(stack)
    feed = IndexingFeed(stack.store)
    kinds = ("failure", "execution", "playbook")
    index = VectorIndex.open(path=tmp_path / "qdrant")
    first = Indexer(feed, index, embedder, name="resume")
    assert await first.run_once(limit=2) > 0 and first.last_batch == 2
    after_first = {k: index.count(k) for k in kinds}
    assert after_first["execution"] == 2
    before_crash = await feed.get_cursor("resume")
    index.close()  # the process stops

    index = VectorIndex.open(path=tmp_path / "qdrant")  # ... and starts again: the points are still there
    assert {k: index.count(k) for k in kinds} == after_first
    second = Indexer(feed, index, embedder, name="resume")
    await second.catch_up()
    full = {k: index.count(k) for k in kinds}
    assert full == {"failure": 3, "execution": 4, "playbook": 3}
    assert await second.catch_up() == 0  # nothing new: nothing embedded again
    # a crash after an upsert but before the cursor was saved: the same batch again, the same points
    await feed.set_cursor("resume", before_crash or {})
    assert await Indexer(feed, index, embedder, name="resume").catch_up() > 0
    assert {k: index.count(k) for k in kinds} == full
    # another run ends: only it is indexed
    await run(stack, dividing(f"again_{uuid.uuid4().hex[:8]}"))
    await second.catch_up()
    assert index.count("execution") == 5 and index.count("failure") == 4
    index.close()
    assert set(ids)  # the runs above were all indexed


async def test_noetl_similar_json_end_to_end_through_the_cli(
        stack: Stack, runtime_env: dict[str, str], tmp_path: Path) -> None:
    ids = await failing_runs(stack)
    done = subprocess.run([sys.executable, "-c", CLI, "similar", ids["orders"], "--limit", "3", "--json"],
                          env=runtime_env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)["items"]
    assert [i["execution_id"] for i in items] == [ids["invoices"], ids["report"]]
    assert items[0]["error_kind"] == "connection" and items[0]["step"] == "fetch_invoices"
    assert items[0]["next"]["later_run_succeeded"] is True
    assert items[0]["score"] > items[1]["score"]
    assert (Path(runtime_env["NOETL_HOME"]) / "qdrant" / "failure").is_dir()  # the embedded index
    unknown = subprocess.run([sys.executable, "-c", CLI, "similar", "no-such-execution", "--json"],
                             env=runtime_env, capture_output=True, text=True, timeout=240)
    assert unknown.returncode == 2 and "no-such-execution" in unknown.stderr


async def test_the_indexer_follows_the_event_log_in_the_process(
        stack: Stack, embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    assert stack.store is not None
    feed = IndexingFeed(stack.store)
    embeddings = EmbeddingsRuntime.open(feed, path=tmp_path / "qdrant", embedder=embedder)
    embeddings.start(poll_s=0.1)
    try:
        execution_id = await run(stack, dividing(f"followed_{uuid.uuid4().hex[:8]}"))
        await poll(lambda: embeddings.index.count("execution") == 1, timeout_s=30,
                   what="the execution to be indexed")
        [found] = await embeddings.similar.search("division by zero")
        assert found.execution_id == execution_id
    finally:
        await embeddings.close()


async def test_noetl_indexer_start_holds_the_index_and_noetl_search_reads_it_after(
        stack: Stack, runtime_env: dict[str, str]) -> None:
    assert stack.store is not None
    ids = await failing_runs(stack)
    home = Path(runtime_env["NOETL_HOME"])
    cursor = f"embeddings:path:{(home / 'qdrant').resolve()}"
    indexer = subprocess.Popen([sys.executable, "-c", CLI, "indexer", "start", "--poll", "0.2"],
                               env=runtime_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        feed = IndexingFeed(stack.store)

        async def caught_up() -> bool:
            position = await feed.get_cursor(cursor)
            return bool(position) and len(position.get("recent") or {}) == len(ids)

        await poll(caught_up, timeout_s=120, what="the indexer process to index the four executions")
        busy = subprocess.run([sys.executable, "-c", CLI, "similar", ids["orders"], "--json"],
                              env=runtime_env, capture_output=True, text=True, timeout=240)
        assert busy.returncode == 3 and "another process" in busy.stderr
    finally:
        indexer.send_signal(signal.SIGTERM)
        _, err = indexer.communicate(timeout=60)
    assert indexer.returncode == 0, err
    assert "documents indexed" in err
    done = subprocess.run([sys.executable, "-c", CLI, "search", "connection refused", "--limit", "1",
                           "--json"], env=runtime_env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    [item] = json.loads(done.stdout)["items"]
    assert item["error_kind"] == "connection" and item["execution_id"] in (ids["orders"], ids["invoices"])
