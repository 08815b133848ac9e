"""Bad requests are 4xx problem+json documents with a code and a detail: never a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.api.helpers import assert_problem

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("method", "url"), [("POST", "/api/execute"), ("PUT", "/api/credentials/c"),
                                             ("POST", "/api/tokens"), ("POST", "/api/catalog/register")])
async def test_malformed_json_is_answered_400(admin: httpx.AsyncClient, method: str, url: str) -> None:
    response = await admin.request(method, url, content=b'{"path": "x",',
                                   headers={"Content-Type": "application/json"})
    doc = assert_problem(response, 400)
    assert doc["code"] in ("malformed_json", "malformed_body")
    assert "JSON" in doc["detail"]


@pytest.mark.parametrize(("method", "url", "content_type"), [
    ("POST", "/api/execute", "text/plain"), ("POST", "/api/execute", "application/x-www-form-urlencoded"),
    ("PUT", "/api/credentials/c", "application/xml"), ("POST", "/api/tokens", None),
    ("POST", "/api/catalog/register", "application/octet-stream"),
    ("POST", "/api/catalog/register", "image/png")])
async def test_a_body_of_an_unsupported_content_type_is_answered_415(
        admin: httpx.AsyncClient, method: str, url: str, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    request = admin.build_request(method, url, content=b'{"path": "x"}', headers=headers)
    if content_type is None:
        request.headers.pop("Content-Type", None)
    doc = assert_problem(await admin.send(request), 415, "unsupported_media_type")
    assert doc["fix"]


async def test_an_empty_registration_is_answered_400(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/catalog/register", content=b"",
                                headers={"Content-Type": "application/yaml"})
    assert_problem(response, 400, "malformed_body")


async def test_a_registration_that_is_not_utf8_is_answered_400(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/api/catalog/register", content=b"name: \xff\xfe",
                                headers={"Content-Type": "text/plain"})
    assert_problem(response, 400, "malformed_body")


@pytest.mark.parametrize(("payload", "kind"), [([1, 2], "an array"), ("text", "a string"), (3, "a number")])
async def test_a_payload_that_is_not_an_object_is_answered_422_saying_so(
        admin: httpx.AsyncClient, payload: object, kind: str) -> None:
    response = await admin.post("/api/execute", json={"path": "x", "payload": payload})
    doc = assert_problem(response, 422, "invalid_request")
    assert "payload must be a JSON object" in doc["detail"] and kind in doc["detail"]
    assert doc["errors"][0]["loc"] == ["body", "payload"]


@pytest.mark.parametrize("body", [[1], "x", {"version": 1}, {"path": "x", "unknown": 1},
                                  {"path": "x", "version": 0}, {"path": "x", "merge": "maybe"}])
async def test_an_execute_body_that_does_not_match_the_schema_is_answered_422(
        admin: httpx.AsyncClient, body: object) -> None:
    doc = assert_problem(await admin.post("/api/execute", json=body), 422, "invalid_request")
    assert all({"loc", "msg", "type"} == set(e) for e in doc["errors"])


@pytest.mark.parametrize("text", ["\u0000", "\ud800"])
async def test_text_postgres_cannot_store_is_answered_422_not_500(admin: httpx.AsyncClient,
                                                                  text: str) -> None:
    raw = '{"path": "x", "payload": {"k": "%s"}}' % ("\\u0000" if text == "\u0000" else "\\ud800")
    response = await admin.post("/api/execute", content=raw.encode(),
                                headers={"Content-Type": "application/json"})
    assert_problem(response, 422, "invalid_request")
    nan = await admin.put("/api/credentials/c", content=b'{"type": "http", "data": {"x": NaN}}',
                          headers={"Content-Type": "application/json"})
    assert_problem(nan, 422, "invalid_request")


async def test_a_nul_inside_a_nested_model_of_a_request_is_answered_422_not_500(
        admin: httpx.AsyncClient) -> None:
    raw = ('{"target": {"path": "a\\u0000b", "step": "s"}, "change": {"timeout_s": 5}, '
           '"rationale": "why"}')
    response = await admin.post("/api/proposals", content=raw.encode(),
                                headers={"Content-Type": "application/json"})
    doc = assert_problem(response, 422, "invalid_request")
    assert "target.path contains a NUL character" in json.dumps(doc)


async def test_a_nul_in_the_url_is_answered_400(admin: httpx.AsyncClient) -> None:
    assert_problem(await admin.get("/api/executions/a%00b"), 400, "invalid_argument")
    assert_problem(await admin.get("/api/catalog", params={"prefix": "a\x00"}), 400, "invalid_argument")


@pytest.mark.parametrize("params", [{"cursor": "garbage"}, {"cursor": "WzEsMl0"},
                                    {"since": "2026-01-02T03:04"}, {"status": "sleeping"}])
async def test_a_bad_cursor_naive_time_or_unknown_status_is_answered_400(
        admin: httpx.AsyncClient, params: dict) -> None:
    doc = assert_problem(await admin.get("/api/executions", params=params), 400, "invalid_argument")
    assert doc["fix"]


@pytest.mark.parametrize(("url", "params"), [
    ("/api/executions", {"limit": 0}), ("/api/executions", {"limit": 1001}),
    ("/api/executions", {"limit": "ten"}), ("/api/executions", {"since": "yesterday"}),
    ("/api/executions/x/events", {"limit": 0}), ("/api/executions/x/events", {"after_seq": -1}),
    ("/api/catalog/playbook", {}), ("/api/catalog/playbook", {"path": "p", "version": 0}),
    ("/api/catalog/playbook", {"path": "p", "version": 2**31})])
async def test_an_out_of_range_or_missing_query_parameter_is_answered_422(
        admin: httpx.AsyncClient, url: str, params: dict) -> None:
    doc = assert_problem(await admin.get(url, params=params), 422, "invalid_request")
    assert doc["errors"][0]["loc"][0] == "query"


async def test_an_unknown_route_is_a_404_problem_and_a_wrong_method_a_405(admin: httpx.AsyncClient) -> None:
    assert_problem(await admin.get("/api/nothing-here"), 404, "not_found")
    assert_problem(await admin.patch("/api/executions"), 405, "method_not_allowed")


async def test_a_body_over_4_mib_is_answered_413(admin: httpx.AsyncClient) -> None:
    big = b"x" * (4 * 1024 * 1024 + 1)
    declared = await admin.post("/api/catalog/register", content=big, headers={"Content-Type": "text/plain"})
    assert_problem(declared, 413, "body_too_large")

    async def chunks():  # no Content-Length: counted while read
        for _ in range(5):
            yield b"y" * (1024 * 1024)

    streamed = await admin.post("/api/catalog/register", content=chunks(),
                                headers={"Content-Type": "text/plain"})
    assert_problem(streamed, 413, "body_too_large")
