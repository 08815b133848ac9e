"""One-time sign-in links (`POST /api/ui/links`, what `noetl ui` opens): a code for the calling token that
signs in once, within 60 s, and leads only to a console path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from control_plane.services.auth import AuthService
from control_plane.services.sessions import SessionService
from tests.integration.api.helpers import Api, assert_problem
from tests.integration.console.helpers import COOKIE, browser

pytestmark = pytest.mark.anyio


async def _link(api: Api, role: str, **body: str) -> dict[str, str]:
    async with api.client(role) as client:
        response = await client.post("/api/ui/links", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_link_signs_in_as_the_calling_token_and_leads_to_the_executions(api: Api) -> None:
    link = await _link(api, "operator")
    url = urlsplit(link["url"])
    assert f"{url.scheme}://{url.netloc}" == api.url and url.path == "/ui/sign-in/link"
    expires = datetime.fromisoformat(link["expires_at"])
    assert timedelta(seconds=55) < expires - datetime.now(UTC) <= timedelta(seconds=61)
    async with browser(api) as client:
        response = await client.get(link["url"])
        assert response.status_code == 303 and response.headers["location"] == "/ui/executions"
        assert COOKIE in client.cookies
        page = await client.get("/ui/executions")
    assert "test-operator</strong> (operator)" in page.text


async def test_a_link_works_once(api: Api) -> None:
    link = await _link(api, "viewer")
    async with browser(api) as first, browser(api) as second:
        assert (await first.get(link["url"])).status_code == 303
        again = await second.get(link["url"])
    assert again.status_code == 401
    assert "set-cookie" not in again.headers
    assert "unknown, was used already or has expired" in again.text


async def test_an_expired_link_does_not_sign_in(api: Api) -> None:
    assert api.stack.store is not None
    info = await AuthService(api.stack.store).authenticate(api.tokens["viewer"])
    expired = await SessionService(api.stack.store, link_ttl_s=0.0).link(info)  # expires as it is made
    async with browser(api) as client:
        response = await client.get(f"/ui/sign-in/link?code={expired.code}")
    assert response.status_code == 401 and "has expired" in response.text
    assert "set-cookie" not in response.headers


async def test_a_link_leads_to_the_console_path_it_was_made_for(api: Api) -> None:
    link = await _link(api, "viewer", path="/ui/proposals?state=proposed")
    async with browser(api) as client:
        response = await client.get(link["url"])
    assert response.headers["location"] == "/ui/proposals?state=proposed"


@pytest.mark.parametrize("path", ["https://evil.example/ui", "//evil.example/ui/executions", "/api/tokens",
                                  "/ui/../api/tokens", "/uix", "/ui\\evil", "ui/executions", "/ui//evil"])
async def test_a_link_to_anything_but_a_console_path_is_refused(api: Api, path: str) -> None:
    async with api.client("viewer") as client:
        response = await client.post("/api/ui/links", json={"path": path})
    doc = assert_problem(response, 400, "invalid_argument")
    assert doc["where"] == "path" and "/ui/" in doc["fix"]


async def test_a_link_needs_a_valid_token(api: Api) -> None:
    async with api.client(None) as client:
        response = await client.post("/api/ui/links", json={})
    assert_problem(response, 401, "unauthorized")


async def test_a_code_that_was_never_issued_or_is_missing_does_not_sign_in(api: Api) -> None:
    async with browser(api) as client:
        for url in ("/ui/sign-in/link?code=nope", "/ui/sign-in/link"):
            response = await client.get(url)
            assert response.status_code == 401 and COOKIE not in client.cookies


async def test_the_code_is_not_stored_in_the_clear(api: Api) -> None:
    link = await _link(api, "viewer")
    code = parse_qs(urlsplit(link["url"]).query)["code"][0]
    assert api.stack.store is not None
    rows = await api.stack.store.db.fetch_all("SELECT code_hash, path FROM console_links")
    assert rows and all(code.encode() not in bytes(r["code_hash"]) for r in rows)
    assert all(len(bytes(r["code_hash"])) == 32 for r in rows)
