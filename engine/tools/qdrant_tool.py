"""The qdrant tool (spec section 3): upsert, search, delete, create_collection through qdrant-client (async).

Target: `url` (`http(s)://…` for a server; `:memory:`, a local directory or `file://…` for the client's
local mode) or `auth`, a credential with `url` and optional `api_key`. Clients are kept per target and
closed with the tool, so an in-memory store lives as long as the worker. Results are plain data:
- create_collection (`vector_size`, `distance` Cosine/Euclid/Dot/Manhattan) → `{collection, created}`;
  an existing collection is left as it is (`created: false`), so a retried step is harmless;
- upsert (`points`: `[{id, vector, payload}]`) → `{operation_id, status, count}`;
- search (`vector`, or `query` as a vector or a point id; `filter`, `limit`, `with_payload`) → the scored
  points `[{id, score, payload, version}]` (via `query_points`: qdrant-client ≥ 1.20 has no `search`);
- delete (`ids` or `filter`; one is required) → `{operation_id, status}`.
Errors: an HTTP error answer carries `http_status`/`status`, `retry_after` and `code` `HTTP_<status>`:
401/403 → auth, 429 → rate_limit, 5xx → server_error (both retryable), other 4xx (an unknown collection,
bad points or vectors) → validation; unreachable → connection, time limit → timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import pydantic
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from engine.protocol.results import ResultEnvelope, http_error_kind
from engine.tools.base import ToolCall
from engine.tools.support import Attempt, ToolFailure, guarded, operation_of, retry_after_seconds
from engine.tools.values import to_json_value

log = logging.getLogger(__name__)

OPERATIONS = ("upsert", "search", "delete", "create_collection")
_DISTANCES = {"cosine": models.Distance.COSINE, "euclid": models.Distance.EUCLID,
              "euclidean": models.Distance.EUCLID, "l2": models.Distance.EUCLID,
              "dot": models.Distance.DOT, "manhattan": models.Distance.MANHATTAN}


class QdrantTool:
    kind = "qdrant"

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str | None], AsyncQdrantClient] = {}
        self._guard = asyncio.Lock()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()

    async def run(self, call: ToolCall) -> ResultEnvelope:
        return await guarded(call, self._run)

    async def _run(self, attempt: Attempt) -> ResultEnvelope:
        config = attempt.config
        operation = operation_of(config, "qdrant", OPERATIONS)
        collection = config.get("collection")
        if not isinstance(collection, str) or not collection:
            raise ToolFailure("validation", "the qdrant tool needs 'collection'")
        client = await self._client(attempt)
        action = {"upsert": _upsert, "search": _search, "delete": _delete,
                  "create_collection": _create}[operation]
        try:
            async with asyncio.timeout(attempt.timeout):
                data = await action(client, collection, config)
        except (UnexpectedResponse, ResponseHandlingException, pydantic.ValidationError, ValueError) as exc:
            raise _classify(exc, operation, collection) from None
        return ResultEnvelope.ok(to_json_value(data, strict=False), operation=operation,
                                 collection=collection)

    async def _client(self, attempt: Attempt) -> AsyncQdrantClient:
        url, api_key = await _target(attempt)
        key = (url, api_key)
        async with self._guard:
            if key not in self._clients:
                self._clients[key] = _connect(url, api_key)
            return self._clients[key]


async def _target(attempt: Attempt) -> tuple[str, str | None]:
    config = attempt.config
    fields = await attempt.credential(config.get("auth"), tool="qdrant") if config.get("auth") else None
    url = config.get("url") or (fields or {}).get("url")
    api_key = (fields or {}).get("api_key") or config.get("api_key")
    if not isinstance(url, str) or not url:
        raise ToolFailure("validation", "the qdrant tool needs 'url' (http://host:6333, ':memory:' or a "
                                        "local directory) or 'auth' (a credential with 'url')")
    attempt.keep_secret(api_key if isinstance(api_key, str) else None)
    return url, api_key if isinstance(api_key, str) else None


def _connect(url: str, api_key: str | None) -> AsyncQdrantClient:
    if url == ":memory:":
        return AsyncQdrantClient(location=":memory:")
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        # no version check: it is a blocking request made while constructing the client
        return AsyncQdrantClient(url=url, api_key=api_key, check_compatibility=False)
    if parts.scheme == "file":
        return AsyncQdrantClient(path=unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:
        raise ToolFailure("validation", f"qdrant url '{url}': use http(s)://, ':memory:' or a local path")
    return AsyncQdrantClient(path=url)


def _decoded(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ToolFailure("validation",
                              f"{what} must be JSON data, got the text {value[:80]!r}") from None
    return value


def _filter(config: Mapping[str, Any]) -> models.Filter | None:
    raw = _decoded(config.get("filter"), "filter")
    return None if raw is None else models.Filter.model_validate(raw)


async def _create(client: AsyncQdrantClient, collection: str, config: Mapping[str, Any]) -> Any:
    size = config.get("vector_size")
    try:
        size = int(size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ToolFailure("validation", f"create_collection needs 'vector_size' (a whole number), got "
                                        f"{size!r}") from None
    name = str(config.get("distance") or "Cosine")
    distance = _DISTANCES.get(name.lower())
    if distance is None:
        raise ToolFailure("validation", f"distance '{name}' is not one of Cosine, Euclid, Dot, Manhattan")
    if await client.collection_exists(collection):
        return {"collection": collection, "created": False}
    await client.create_collection(collection, vectors_config=models.VectorParams(size=size,
                                                                                  distance=distance))
    return {"collection": collection, "created": True}


async def _upsert(client: AsyncQdrantClient, collection: str, config: Mapping[str, Any]) -> Any:
    points = _decoded(config.get("points"), "points")
    if not isinstance(points, list) or not points:
        raise ToolFailure("validation", "upsert needs 'points': a non-empty list of {id, vector, payload}")
    structs = [p if isinstance(p, models.PointStruct) else models.PointStruct.model_validate(p)
               for p in points]
    answer = await client.upsert(collection, points=structs, wait=True)
    return {**answer.model_dump(mode="json"), "count": len(structs)}


async def _search(client: AsyncQdrantClient, collection: str, config: Mapping[str, Any]) -> Any:
    query = _decoded(config.get("vector"), "vector")
    if query is None:
        query = config.get("query")
        if isinstance(query, str) and query.lstrip().startswith("["):
            query = _decoded(query, "query")
    if query is None:
        raise ToolFailure("validation", "search needs 'vector' (or 'query': a vector or a point id)")
    try:
        limit = int(config.get("limit") or 10)
    except (TypeError, ValueError):
        raise ToolFailure("validation", f"limit must be a whole number, got {config.get('limit')!r}") \
            from None
    answer = await client.query_points(collection, query=query, query_filter=_filter(config), limit=limit,
                                       with_payload=bool(config.get("with_payload", True)))
    return [p.model_dump(mode="json", exclude_none=True) for p in answer.points]


async def _delete(client: AsyncQdrantClient, collection: str, config: Mapping[str, Any]) -> Any:
    ids = _decoded(config.get("ids"), "ids")
    query_filter = _filter(config)
    if ids is not None:
        selector: Any = models.PointIdsList(points=list(ids) if isinstance(ids, list) else [ids])
    elif query_filter is not None:
        selector = models.FilterSelector(filter=query_filter)
    else:
        raise ToolFailure("validation", "delete needs 'ids' or 'filter' (it never deletes everything)")
    answer = await client.delete(collection, points_selector=selector, wait=True)
    return answer.model_dump(mode="json")


def _classify(exc: Exception, operation: str, collection: str) -> ToolFailure:
    where = f"qdrant {operation} on '{collection}'"
    name = type(exc).__name__
    if isinstance(exc, UnexpectedResponse) and exc.status_code is not None:  # None: not an HTTP reply
        status = exc.status_code
        detail = exc.content.decode("utf-8", "replace")[:300] if exc.content else exc.reason_phrase
        text = f"{where} returned {status}: {detail}"
        kind, retryable = http_error_kind(status)
        if kind in ("not_found", "client_error"):  # the request the step built is wrong
            kind = "validation"
        headers = getattr(exc, "headers", None) or {}
        return ToolFailure(kind, text, retryable=retryable, code=f"HTTP_{status}", type=name,
                           http_status=status, retry_after=retry_after_seconds(headers.get("retry-after")))
    if isinstance(exc, ResponseHandlingException):
        source = getattr(exc, "source", None)
        if isinstance(source, TimeoutError) or "timed out" in str(exc).lower():
            return ToolFailure("timeout", f"{where} timed out: {exc}", type=name)
        return ToolFailure("connection", f"{where}: qdrant could not be reached: {exc}", type=name)
    return ToolFailure("validation", f"{where}: {exc}", type=name)
