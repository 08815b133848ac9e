"""A small paginated HTTP API on 127.0.0.1 for NoETL-style playbooks: page, offset and cursor pagination
over 35 items, a flaky endpoint (503 before it answers) and a rate-limited one (429 with Retry-After).

    /api/v1/assessments?page=P&pageSize=S   {data: [...], paging: {page, pageSize, total, hasMore}}
    /api/v1/users?offset=O&limit=L          {data: [...], offset, limit, total, has_more}
    /api/v1/events?cursor=C&limit=L         {events: [...], next_cursor (null on the last page), limit}
    /api/v1/flaky/KEY?fail=N&page=P&pageSize=S      503 for the first N calls of KEY+page, then a page
    /api/v1/limited/KEY?page=P&pageSize=S           429 (Retry-After: 1) on the first call of KEY+page
    /api/v1/calls/KEY                       {calls: how often KEY's flaky/limited pages were asked for}
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.harness.http_server import reply_json, serving

TOTAL_ITEMS = 35
ITEMS = [{"id": i, "name": f"item-{i}"} for i in range(1, TOTAL_ITEMS + 1)]


def _cursor(next_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": next_id}).encode()).decode()


def _after(cursor: str) -> int:
    return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["after"])


class _Handler(BaseHTTPRequestHandler):
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def _reply(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        reply_json(self, code, body, headers)

    def _count(self, key: str) -> int:
        with self.lock:
            self.calls[key] = self.calls.get(key, 0) + 1
            return self.calls[key]

    def _page(self, query: dict[str, str]) -> dict[str, Any]:
        page, size = int(query.get("page", 1)), int(query.get("pageSize", 10))
        start = (page - 1) * size
        return {"data": ITEMS[start:start + size],
                "paging": {"page": page, "pageSize": size, "total": TOTAL_ITEMS,
                           "hasMore": start + size < TOTAL_ITEMS}}

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        segments = parts.path.strip("/").split("/")[2:]  # after api/v1
        name = segments[0] if segments else ""
        if name == "assessments":
            self._reply(200, self._page(query))
        elif name == "users":
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 10))
            self._reply(200, {"data": ITEMS[offset:offset + limit], "offset": offset, "limit": limit,
                              "total": TOTAL_ITEMS, "has_more": offset + limit < TOTAL_ITEMS})
        elif name == "events":
            after, limit = _after(query["cursor"]) if query.get("cursor") else 0, int(query.get("limit", 10))
            chunk = ITEMS[after:after + limit]
            more = after + limit < TOTAL_ITEMS
            self._reply(200, {"events": chunk, "next_cursor": _cursor(after + limit) if more else None,
                              "limit": limit})
        elif name == "flaky":
            key = f"{segments[1]}:{query.get('page', 1)}"
            self._count(segments[1])
            if self._count(key) <= int(query.get("fail", 1)):
                self._reply(503, {"error": "temporarily unavailable"})
            else:
                self._reply(200, self._page(query))
        elif name == "limited":
            key = f"{segments[1]}:{query.get('page', 1)}"
            self._count(segments[1])
            if self._count(key) == 1:
                self._reply(429, {"error": "slow down"}, {"Retry-After": "1"})
            else:
                self._reply(200, self._page(query))
        elif name == "calls":
            with self.lock:
                self._reply(200, {"calls": self.calls.get(segments[1], 0)})
        else:
            self._reply(404, {"error": f"no such path {parts.path}"})

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass(frozen=True)
class PaginatedApi:
    url: str

    def calls(self, key: str) -> int:
        with _Handler.lock:
            return _Handler.calls.get(key, 0)


@pytest.fixture(scope="module")
def paginated_api() -> Iterator[PaginatedApi]:
    with serving(_Handler) as url:
        yield PaginatedApi(url)
