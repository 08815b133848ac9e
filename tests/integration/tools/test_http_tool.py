"""The http tool talks to a real local server and classifies every failure."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.protocol.results import ResultEnvelope
from engine.tools.http_tool import HttpTool
from engine.tools.support import retry_after_seconds
from tests.integration.tools.conftest import StoredCredentials, free_port, make_call

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[HttpTool]:
    tool = HttpTool()
    yield tool
    await tool.close()


async def send(tool: HttpTool, config: dict[str, Any], **fields: Any) -> ResultEnvelope:
    return await tool.run(make_call("http", config, **fields))


async def test_a_get_returns_status_headers_url_elapsed_and_parsed_json(http: HttpTool,
                                                                         http_server: str) -> None:
    env = await send(http, {"url": f"{http_server}/echo", "params": {"q": "x y", "n": 2, "flag": True}})
    assert env.status == "ok"
    data = env.data
    assert data["status_code"] == 200 and data["url"].startswith(f"{http_server}/echo?")
    assert data["headers"]["content-type"] == "application/json" and data["elapsed_ms"] > 0
    assert data["data"]["method"] == "GET"
    assert data["data"]["query"] == {"q": "x y", "n": "2", "flag": "true"}
    assert (env.meta.model_extra or {})["http"]["status"] == 200


async def test_a_json_body_is_sent_as_json(http: HttpTool, http_server: str) -> None:
    env = await send(http, {"method": "POST", "url": f"{http_server}/echo",
                            "json": {"a": [1, 2], "b": None}, "headers": {"X-Trace": "t1"}})
    echo = env.data["data"]
    assert echo["json"] == {"a": [1, 2], "b": None}
    assert echo["headers"]["content-type"] == "application/json" and echo["headers"]["x-trace"] == "t1"


async def test_form_data_and_raw_bodies_are_sent_as_given(http: HttpTool, http_server: str) -> None:
    form = await send(http, {"method": "POST", "url": f"{http_server}/echo", "form": {"a": "1", "b": "two"}})
    assert form.data["data"]["body"] == "a=1&b=two"
    raw = await send(http, {"method": "PUT", "url": f"{http_server}/echo", "body": "plain text"})
    assert raw.data["data"]["body"] == "plain text" and raw.data["data"]["method"] == "PUT"


async def test_a_payload_is_the_query_of_a_get_and_the_json_body_of_a_post(http: HttpTool,
                                                                             http_server: str) -> None:
    get = await send(http, {"url": f"{http_server}/echo", "payload": {"city": "Paris"}})
    assert get.data["data"]["query"] == {"city": "Paris"}
    post = await send(http, {"method": "POST", "url": f"{http_server}/echo", "payload": {"city": "Oslo"}})
    assert post.data["data"]["json"] == {"city": "Oslo"}


async def test_text_and_binary_bodies_are_kept_as_text_and_base64(http: HttpTool, http_server: str) -> None:
    text = await send(http, {"url": f"{http_server}/text"})
    assert text.data["data"] == "hello there"
    binary = await send(http, {"url": f"{http_server}/binary"})
    assert binary.data["data"] == "AP8B/g==" and (binary.meta.model_extra or {})["body_encoding"] == "base64"


async def test_redirects_are_followed_unless_turned_off(http: HttpTool, http_server: str) -> None:
    followed = await send(http, {"url": f"{http_server}/redirect"})
    assert followed.data["status_code"] == 200 and followed.data["data"]["query"] == {"from": "redirect"}
    kept = await send(http, {"url": f"{http_server}/redirect", "follow_redirects": False})
    assert kept.status == "ok" and kept.data["status_code"] == 302


async def test_turning_verification_off_still_sends_the_request(http: HttpTool, http_server: str) -> None:
    env = await send(http, {"url": f"{http_server}/echo", "verify": "false", "method": "DELETE"})
    assert env.status == "ok" and env.data["data"]["method"] == "DELETE"


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (404, "not_found", False), (400, "client_error", False), (409, "client_error", False),
    (408, "client_error", True), (500, "server_error", True), (503, "server_error", True),
    (429, "rate_limit", True), (401, "auth", False), (403, "auth", False),
])
async def test_an_error_status_is_an_error_envelope_with_the_response(
        http: HttpTool, http_server: str, status: int, kind: str, retryable: bool) -> None:
    env = await send(http, {"url": f"{http_server}/status/{status}"})
    assert env.status == "error" and env.error is not None
    assert env.error.kind == kind and env.error.retryable is retryable and env.error.code == f"HTTP_{status}"
    assert env.error.http_status == status and env.error.status == status and env.error.source == "http"
    assert env.data["status_code"] == status and env.data["data"] == {"error": f"status {status}"}
    assert env.data["body"] == env.data["data"]
    assert (env.meta.model_extra or {})["http"]["status"] == status


async def test_a_rate_limit_keeps_the_retry_after_hint_in_seconds(http: HttpTool, http_server: str) -> None:
    env = await send(http, {"url": f"{http_server}/status/429"})
    assert env.error is not None and env.error.retry_after == 1.0


async def test_a_refused_connection_is_a_retryable_connection_error(http: HttpTool) -> None:
    env = await send(http, {"url": f"http://127.0.0.1:{free_port()}/x"})
    assert env.error is not None and env.error.kind == "connection" and env.error.retryable is True


async def test_a_slow_server_is_a_timeout_at_the_smaller_limit(http: HttpTool, http_server: str) -> None:
    started = time.perf_counter()
    env = await send(http, {"url": f"{http_server}/slow?s=3", "timeout": 0.3}, timeout_s=10)
    assert env.error is not None and env.error.kind == "timeout" and env.error.retryable is True
    assert time.perf_counter() - started < 2


async def test_a_bearer_credential_is_sent_and_its_token_redacted(http: HttpTool, http_server: str) -> None:
    creds = StoredCredentials({"api": ("bearer", {"token": "tok-123456"})})
    env = await send(http, {"url": f"{http_server}/secure", "auth": "api"}, credentials=creds)
    assert env.status == "ok" and env.data["data"]["ok"] is True
    assert "***" in env.data["data"]["seen"]
    assert "tok-123456" not in env.model_dump_json()


async def test_basic_and_header_credentials_are_applied(http: HttpTool, http_server: str) -> None:
    creds = StoredCredentials({"basic": ("http", {"username": "ann", "password": "pw-secret-9"}),
                               "hdr": ("http", {"headers": {"X-Api-Key": "key-abcdef"}})})
    basic = await send(http, {"url": f"{http_server}/echo", "auth": "basic"}, credentials=creds)
    assert basic.data["data"]["headers"]["authorization"] == "***"
    hdr = await send(http, {"url": f"{http_server}/echo", "auth": {"source": "credential", "key": "hdr"}},
                     credentials=creds)
    assert hdr.data["data"]["headers"]["x-api-key"] == "***"


async def test_a_missing_credential_is_its_own_error_kind(http: HttpTool, http_server: str) -> None:
    env = await send(http, {"url": f"{http_server}/echo", "auth": "nope"})
    assert env.error is not None and env.error.kind == "missing_credential"
    assert "nope" in env.error.message


async def test_a_bad_request_configuration_is_a_validation_error(http: HttpTool) -> None:
    no_url = await send(http, {"method": "GET"})
    assert no_url.error is not None and no_url.error.kind == "validation"
    bad_scheme = await send(http, {"url": "ftp://example.org/file"})
    assert bad_scheme.error is not None and bad_scheme.error.kind == "validation"
    two_bodies = await send(http, {"url": "http://127.0.0.1/", "json": {}, "body": "x"})
    assert two_bodies.error is not None and two_bodies.error.kind == "validation"


def test_a_retry_after_given_as_an_http_date_is_read_as_seconds_from_now() -> None:
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Mon, 07 Dec 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Mon, 07 Dec 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("2.5") == 2.5 and retry_after_seconds("soon") is None
