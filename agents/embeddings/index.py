"""The vector index of documents: one collection per document kind (failure, execution, playbook).

The only agents module that imports qdrant_client and qdrant_edge (DESIGN principle 6; the user-facing
`kind: qdrant` tool in engine/tools is separate). Two backends behind one `VectorIndex`:

- in process (the default): Qdrant Edge, Qdrant's engine embedded in the process, one shard directory per
  kind under `path` (<NOETL_HOME>/qdrant). Chosen over qdrant-client's local mode because local mode is a
  pure-Python brute force that upcasts every vector to float64 for each query: measured here, 70-130 ms
  a query at 100k points (and minutes to insert them) against Edge's ~1 ms (HNSW, payload indexes);
- a Qdrant server (`url`, NOETL_QDRANT_URL) through qdrant-client; `url=":memory:"` gives qdrant-client's
  local mode, used by tests of this backend.

An embedded shard directory can be open in ONE `VectorIndex` of ONE process at a time (the engine locks
its write-ahead log): `VectorIndex.open` hands out one shared instance per path (or url) per process,
counted; `close()` releases it when the last user closes. A second process gets IndexBusyError: ask the
process that holds it (the server's API), or use a Qdrant server.

Vectors are expected unit-length (MiniLMEmbedder normalizes); the distance is cosine. Payload indexes
(keyword) on execution_id, playbook_path, step and error_kind make filtered searches as fast as plain ones.
Calls are blocking: async callers run them in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.embeddings.documents import KINDS, Document

log = logging.getLogger(__name__)

INDEXED_FIELDS = ("execution_id", "playbook_path", "step", "error_kind")
EXCLUDE_SLACK = 16  # extra hits fetched for a search with `exclude` before falling back to a filter
Filters = Mapping[str, str | Sequence[str]]  # payload field -> a value, or any of several values


class IndexError_(RuntimeError):
    """Base of the index's errors (not builtins.IndexError)."""


class IndexBusyError(IndexError_):
    """The embedded index directory is held by another process."""


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


class _Backend(Protocol):
    def upsert(self, kind: str, ids: list[str], vectors: list[list[float]],
               payloads: list[dict[str, Any]]) -> None: ...

    def search(self, kind: str, vector: list[float], limit: int, must: Filters | None,
               must_not: Filters | None) -> list[Hit]: ...

    def count(self, kind: str) -> int: ...

    def retrieve(self, kind: str, ids: list[str], with_vectors: bool) -> dict[str, tuple[list[float] | None,
                                                                                         dict[str, Any]]]: ...

    def optimize(self, kind: str) -> None: ...

    def close(self) -> None: ...


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown document kind '{kind}'; one of {', '.join(KINDS)}")


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


class VectorIndex:
    """Open with `VectorIndex.open(path=...)` or `VectorIndex.open(url=...)`; see the module docstring."""

    _shared: dict[str, VectorIndex] = {}
    _shared_lock = threading.Lock()

    def __init__(self, backend: _Backend, key: str, dim: int) -> None:
        self._backend = backend
        self.key = key
        self.dim = dim
        self._users = 0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, *, path: Path | str | None = None, url: str | None = None, api_key: str | None = None,
             dim: int = 384, prefix: str = "noetl") -> VectorIndex:
        """The process's index at `path` (embedded) or `url` (a Qdrant server); exactly one of the two."""
        if (path is None) == (url is None):
            raise ValueError("pass either path (the embedded index's directory) or url (a Qdrant server)")
        key = f"url:{url}:{prefix}" if url is not None else f"path:{Path(path).resolve()}"  # type: ignore[arg-type]
        with cls._shared_lock:
            index = cls._shared.get(key)
            if index is None:
                backend: _Backend = (_ClientBackend(url, api_key, dim, prefix) if url is not None
                                     else _EdgeBackend(Path(path), dim))  # type: ignore[arg-type]
                index = cls._shared[key] = cls(backend, key, dim)
            elif index.dim != dim:
                raise ValueError(f"the index {key} is open with {index.dim} dimensions, not {dim}")
            index._users += 1
            return index

    def close(self) -> None:
        """Release this user's share; the last one closes the index (flushing it)."""
        with self._shared_lock:
            self._users -= 1
            if self._users > 0:
                return
            self._shared.pop(self.key, None)
        with self._lock:
            self._backend.close()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(self, documents: Sequence[Document], vectors: Sequence[Sequence[float]]) -> None:
        """Insert or replace each document (same id: same point) with its vector and payload."""
        if len(documents) != len(vectors):
            raise ValueError(f"{len(documents)} documents but {len(vectors)} vectors")
        by_kind: dict[str, tuple[list[str], list[list[float]], list[dict[str, Any]]]] = {}
        for document, vector in zip(documents, vectors, strict=True):
            _check_kind(document.kind)
            if len(vector) != self.dim:
                raise ValueError(f"document {document.id}: a vector of {len(vector)} floats, the index "
                                 f"has {self.dim} dimensions")
            ids, vecs, payloads = by_kind.setdefault(document.kind, ([], [], []))
            ids.append(document.id)
            vecs.append([float(x) for x in vector])
            payloads.append({**document.payload, "kind": document.kind, "text": document.text})
        with self._lock:
            for kind, (ids, vecs, payloads) in by_kind.items():
                self._backend.upsert(kind, ids, vecs, payloads)

    def search(self, vector: Sequence[float], kind: str = "failure", limit: int = 10,
               filters: Filters | None = None, exclude: Filters | None = None) -> list[Hit]:
        """The `limit` nearest documents of `kind`, best first; `filters` must match, `exclude` must not."""
        _check_kind(kind)
        if limit < 1:
            raise ValueError(f"limit {limit} must be at least 1")
        query = [float(x) for x in vector]
        if not exclude:
            with self._lock:
                return self._backend.search(kind, query, limit, filters, None)
        # a must-not filter costs the exact search about as much again: over-fetch and drop the excluded
        # hits here, and ask with the filter only when too few are left
        excluded = {key: set(_values(value)) for key, value in exclude.items()}
        wanted = limit + EXCLUDE_SLACK
        with self._lock:
            hits = self._backend.search(kind, query, wanted, filters, None)
        kept = [h for h in hits if not any(str(h.payload.get(k)) in v for k, v in excluded.items())]
        if len(kept) >= limit or len(hits) < wanted:
            return kept[:limit]
        with self._lock:
            return self._backend.search(kind, query, limit, filters, exclude)

    def count(self, kind: str) -> int:
        _check_kind(kind)
        with self._lock:
            return self._backend.count(kind)

    def retrieve(self, kind: str, ids: Sequence[str], *, with_vectors: bool = False
                 ) -> dict[str, tuple[list[float] | None, dict[str, Any]]]:
        """The stored points among `ids`: id -> (vector or None, payload)."""
        _check_kind(kind)
        if not ids:
            return {}
        with self._lock:
            return self._backend.retrieve(kind, list(ids), with_vectors)

    def optimize(self, kind: str) -> None:
        """Build the embedded shard's HNSW graph now (a no-op on a server, which does it itself).

        Blocking, and the embedded engine holds the GIL meanwhile (~20 s at 100k points): not for a
        serving process. Without it searches are exact (brute force), ~10-15 ms at 100k points."""
        _check_kind(kind)
        with self._lock:
            self._backend.optimize(kind)


# ---------------------------------------------------------------------------------------------- Edge
class _EdgeBackend:
    def __init__(self, root: Path, dim: int) -> None:
        import qdrant_edge

        self._q = qdrant_edge
        self.root = root
        self.dim = dim
        self._shards: dict[str, Any] = {}

    def _shard(self, kind: str) -> Any:
        shard = self._shards.get(kind)
        if shard is not None:
            return shard
        q = self._q
        directory = self.root / kind
        # float16 storage: half the memory read by each exact search, ranks as float32 does (to ~1e-4)
        config = q.EdgeConfig(vectors={"": q.EdgeVectorParams(size=self.dim, distance=q.Distance.Cosine,
                                                              datatype=q.VectorStorageDatatype.Float16)})
        try:
            if (directory / "edge_config.json").is_file():
                shard = q.EdgeShard.load(str(directory))
                stored = shard.info()
                log.debug("opened the %s index at %s (%d points)", kind, directory, stored.points_count)
            else:
                directory.mkdir(parents=True, exist_ok=True)
                shard = q.EdgeShard.create(str(directory), config)
                for name in INDEXED_FIELDS:
                    shard.update(q.UpdateOperation.create_field_index(name, q.PayloadSchemaType.Keyword))
        except Exception as exc:  # the engine raises a bare Exception
            if "WouldBlock" in str(exc):
                raise IndexBusyError(
                    f"the vector index at {directory} is open in another process; ask that process "
                    "(the server's API, NOETL_SERVER_URL), stop it, or use a Qdrant server "
                    "(NOETL_QDRANT_URL)") from exc
            raise
        self._shards[kind] = shard
        return shard

    def _filter(self, must: Filters | None, must_not: Filters | None) -> Any:
        q = self._q

        def conditions(filters: Filters | None) -> list[Any] | None:
            if not filters:
                return None
            return [q.FieldCondition(key, match=q.MatchAny(_values(value))) for key, value in filters.items()]

        if not must and not must_not:
            return None
        return q.Filter(must=conditions(must), must_not=conditions(must_not))

    def upsert(self, kind: str, ids: list[str], vectors: list[list[float]],
               payloads: list[dict[str, Any]]) -> None:
        q = self._q
        shard = self._shard(kind)
        shard.update(q.UpdateOperation.upsert_points(
            [q.Point(i, v, p) for i, v, p in zip(ids, vectors, payloads, strict=True)]))
        shard.flush()

    def search(self, kind: str, vector: list[float], limit: int, must: Filters | None,
               must_not: Filters | None) -> list[Hit]:
        q = self._q
        request = q.QueryRequest(limit=limit, query=q.Query.Nearest(vector),
                                 filter=self._filter(must, must_not), with_payload=True)
        points = self._shard(kind).query(request)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def count(self, kind: str) -> int:
        return int(self._shard(kind).count(self._q.CountRequest(exact=True)))

    def retrieve(self, kind: str, ids: list[str], with_vectors: bool
                 ) -> dict[str, tuple[list[float] | None, dict[str, Any]]]:
        records = self._shard(kind).retrieve(ids, with_payload=True, with_vector=with_vectors)
        return {str(r.id): (_dense(r.vector) if with_vectors else None, dict(r.payload or {}))
                for r in records}

    def optimize(self, kind: str) -> None:
        self._shard(kind).optimize()

    def close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()


def _dense(vector: Any) -> list[float] | None:
    if isinstance(vector, dict):
        vector = vector.get("")
    return [float(x) for x in vector] if vector is not None else None


# -------------------------------------------------------------------------------------------- server
class _ClientBackend:
    def __init__(self, url: str, api_key: str | None, dim: int, prefix: str) -> None:
        from qdrant_client import QdrantClient, models

        self._models = models
        self.client = (QdrantClient(location=":memory:") if url == ":memory:"
                       else QdrantClient(url=url, api_key=api_key))
        self.dim = dim
        self.prefix = prefix
        self._ready: set[str] = set()

    def _collection(self, kind: str) -> str:
        name = f"{self.prefix}_{kind}"
        if name in self._ready:
            return name
        models = self._models
        if not self.client.collection_exists(name):
            self.client.create_collection(name, vectors_config=models.VectorParams(
                size=self.dim, distance=models.Distance.COSINE))
            for field_name in INDEXED_FIELDS:
                self.client.create_payload_index(name, field_name,
                                                 field_schema=models.PayloadSchemaType.KEYWORD)
        else:
            size = self.client.get_collection(name).config.params.vectors
            stored = getattr(size, "size", None)
            if stored is not None and stored != self.dim:
                raise IndexError_(f"the Qdrant collection '{name}' has {stored}-dimensional vectors, this "
                                  f"embedder gives {self.dim}; use another prefix or drop the collection")
        self._ready.add(name)
        return name

    def _filter(self, must: Filters | None, must_not: Filters | None) -> Any:
        models = self._models

        def conditions(filters: Filters | None) -> list[Any] | None:
            if not filters:
                return None
            return [models.FieldCondition(key=key, match=models.MatchAny(any=_values(value)))
                    for key, value in filters.items()]

        if not must and not must_not:
            return None
        return models.Filter(must=conditions(must), must_not=conditions(must_not))

    def upsert(self, kind: str, ids: list[str], vectors: list[list[float]],
               payloads: list[dict[str, Any]]) -> None:
        self.client.upsert(self._collection(kind), wait=True,
                           points=self._models.Batch(ids=ids, vectors=vectors, payloads=payloads))

    def search(self, kind: str, vector: list[float], limit: int, must: Filters | None,
               must_not: Filters | None) -> list[Hit]:
        response = self.client.query_points(self._collection(kind), query=vector, limit=limit,
                                            query_filter=self._filter(must, must_not), with_payload=True)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    def count(self, kind: str) -> int:
        return int(self.client.count(self._collection(kind), exact=True).count)

    def retrieve(self, kind: str, ids: list[str], with_vectors: bool
                 ) -> dict[str, tuple[list[float] | None, dict[str, Any]]]:
        records = self.client.retrieve(self._collection(kind), ids=ids, with_payload=True,
                                       with_vectors=with_vectors)
        return {str(r.id): (_dense(r.vector) if with_vectors else None, dict(r.payload or {}))
                for r in records}

    def optimize(self, kind: str) -> None:
        return None

    def close(self) -> None:
        self.client.close()
