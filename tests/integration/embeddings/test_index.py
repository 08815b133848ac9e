"""The vector index on both backends: Qdrant Edge in process, and qdrant-client (its local mode stands in
for a server: the same client calls)."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.embeddings.documents import Document, document_id
from agents.embeddings.index import VectorIndex

DIM = 8


def unit(seed: int) -> list[float]:
    rng = random.Random(seed)
    v = [rng.uniform(-1, 1) for _ in range(DIM)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def failure(n: int, execution: str, step: str = "s", kind: str = "timeout") -> Document:
    return Document(document_id("failure", f"e{n}"), "failure", f"text {n}",
                    {"execution_id": execution, "step": step, "error_kind": kind,
                     "input_shape": {"a": "int"}})


@pytest.fixture(params=["edge", "client"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    target = {"path": tmp_path / "qdrant"} if request.param == "edge" else {"url": ":memory:",
                                                                            "prefix": tmp_path.name}
    opened = VectorIndex.open(dim=DIM, **target)  # type: ignore[arg-type]
    yield opened
    opened.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect")
def test_upsert_search_filter_count_retrieve(index: VectorIndex) -> None:
    docs = [failure(n, f"x{n % 3}", kind="timeout" if n % 2 else "connection") for n in range(30)]
    index.upsert(docs, [unit(n) for n in range(30)])
    index.upsert(docs[:5], [unit(n) for n in range(5)])  # the same ids again: replaced, not added
    assert index.count("failure") == 30 and index.count("execution") == 0
    [best, *rest] = index.search(unit(7), "failure", limit=5)
    assert best.id == docs[7].id and best.score == pytest.approx(1.0, abs=2e-3)  # float16 storage
    assert best.payload["input_shape"] == {"a": "int"} and best.payload["text"] == "text 7"
    assert all(h.score <= best.score for h in rest)
    hits = index.search(unit(7), "failure", limit=30, exclude={"execution_id": "x1"})
    assert len(hits) == 20 and all(h.payload["execution_id"] != "x1" for h in hits)
    hits = index.search(unit(7), "failure", limit=30, filters={"error_kind": "timeout",
                                                                "execution_id": ["x0", "x2"]})
    assert hits and all(h.payload["error_kind"] == "timeout" and h.payload["execution_id"] != "x1"
                        for h in hits)
    stored = index.retrieve("failure", [docs[3].id, document_id("failure", "nope")], with_vectors=True)
    assert list(stored) == [docs[3].id]
    vector, payload = stored[docs[3].id]
    assert vector is not None
    assert sum(a * b for a, b in zip(vector, unit(3), strict=True)) == pytest.approx(1, abs=2e-3)
    assert payload["execution_id"] == "x0"
    index.optimize("failure")
    with pytest.raises(ValueError, match="unknown document kind"):
        index.count("nonsense")
    with pytest.raises(ValueError, match="dimensions"):
        index.upsert(docs[:1], [[1.0]])


def test_one_shared_instance_per_path_and_other_processes_are_told_it_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    first = VectorIndex.open(path=path, dim=DIM)
    second = VectorIndex.open(path=path, dim=DIM)
    assert first is second
    first.upsert([failure(1, "x")], [unit(1)])
    program = ("from agents.embeddings.index import VectorIndex, IndexBusyError\n"
               f"index = VectorIndex.open(path={str(path)!r}, dim={DIM})\n"
               "try:\n    index.count('failure')\nexcept IndexBusyError as exc:\n    print('busy:', exc)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert "busy:" in done.stdout and "NOETL_QDRANT_URL" in done.stdout, done.stderr
    first.close()
    assert second.count("failure") == 1  # still open: one user left
    second.close()
    again = VectorIndex.open(path=path, dim=DIM)  # reopened from disk
    assert again is not first and again.count("failure") == 1
    again.close()
