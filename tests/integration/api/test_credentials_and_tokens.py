"""Credentials go in and never come out; tokens are shown once, listed without their value, revoked."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.api.helpers import Api, assert_problem

pytestmark = pytest.mark.anyio


async def test_a_credential_is_stored_replaced_listed_described_and_deleted_without_its_values(
        api: Api, admin: httpx.AsyncClient) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    stored = await admin.put("/api/credentials/warehouse", json={
        "type": "postgres", "description": "the warehouse",
        "data": {"db_host": "db", "db_port": 5432, "db_user": "u", "db_password": secret, "db_name": "w"}})
    assert stored.status_code == 200, stored.text
    info = stored.json()
    assert set(info) == {"name", "type", "description", "created_at", "updated_at"}
    assert (info["name"], info["type"], info["description"]) == ("warehouse", "postgres", "the warehouse")

    replaced = await admin.put("/api/credentials/warehouse", json={"type": "http", "data": {"token": secret}})
    assert replaced.json()["type"] == "http" and replaced.json()["description"] is None
    assert replaced.json()["created_at"] == info["created_at"]

    async with api.client("viewer") as viewer:
        listed = await viewer.get("/api/credentials")
        one = await viewer.get("/api/credentials/warehouse")
    assert "warehouse" in [i["name"] for i in listed.json()["items"]]
    assert one.json()["name"] == "warehouse"
    for response in (stored, replaced, listed, one):
        assert secret not in response.text

    assert (await admin.delete("/api/credentials/warehouse")).status_code == 204
    assert_problem(await admin.get("/api/credentials/warehouse"), 404, "not_found")
    assert_problem(await admin.delete("/api/credentials/warehouse"), 404, "not_found")


async def test_a_postgres_credential_missing_fields_is_answered_400_naming_them(
        admin: httpx.AsyncClient) -> None:
    response = await admin.put("/api/credentials/incomplete", json={"type": "postgres",
                                                                   "data": {"db_host": "h"}})
    doc = assert_problem(response, 400, "invalid_argument")
    assert "db_user" in doc["detail"]


@pytest.mark.parametrize("body", [{"type": "http"}, {"type": "http", "data": [1]}, {"data": {}},
                                  {"type": "http", "data": {}, "extra": 1}, {"type": "", "data": {}}])
async def test_a_credential_body_that_does_not_match_the_schema_is_answered_422(
        admin: httpx.AsyncClient, body: dict) -> None:
    assert_problem(await admin.put("/api/credentials/c1", json=body), 422, "invalid_request")


async def test_a_credential_name_with_other_characters_is_answered_422(admin: httpx.AsyncClient) -> None:
    response = await admin.put("/api/credentials/bad%20name", json={"type": "http", "data": {}})
    assert_problem(response, 422, "invalid_request")


async def test_a_token_is_shown_once_listed_without_its_value_used_and_revoked(
        api: Api, admin: httpx.AsyncClient) -> None:
    created = await admin.post("/api/tokens", json={"name": "ci", "role": "operator"})
    assert created.status_code == 201, created.text
    doc = created.json()
    assert set(doc) == {"id", "name", "role", "created_at", "token"}
    token = doc["token"]
    assert token.startswith("noetl_") and len(token) == len("noetl_") + 43

    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as ci:
        assert (await ci.get("/api/executions")).status_code == 200
        assert_problem(await ci.get("/api/tokens"), 403, "forbidden")

    listed = await admin.get("/api/tokens")
    items = {i["id"]: i for i in listed.json()["items"]}
    assert token not in listed.text
    assert set(items[doc["id"]]) == {"id", "name", "role", "created_at", "last_used_at"}
    assert items[doc["id"]]["role"] == "operator" and items[doc["id"]]["last_used_at"] is not None

    assert (await admin.delete(f"/api/tokens/{doc['id']}")).status_code == 204
    assert doc["id"] not in [i["id"] for i in (await admin.get("/api/tokens")).json()["items"]]
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as ci:
        assert_problem(await ci.get("/api/executions"), 401, "unauthorized")
    assert_problem(await admin.delete(f"/api/tokens/{doc['id']}"), 404, "not_found")


@pytest.mark.parametrize("body", [{"name": "x", "role": "root"}, {"name": "", "role": "viewer"},
                                  {"name": "   ", "role": "viewer"}, {"role": "viewer"},
                                  {"name": "x" * 201, "role": "viewer"}])
async def test_a_token_request_with_an_unknown_role_or_no_name_is_answered_422(
        admin: httpx.AsyncClient, body: dict) -> None:
    assert_problem(await admin.post("/api/tokens", json=body), 422, "invalid_request")
