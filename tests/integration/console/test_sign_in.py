"""Signing in to the console: a form that takes an API token, a server-side session in a strict cookie,
checked against its token on every request; sign-out; forms refused without the session's CSRF token or
from another origin."""

from __future__ import annotations

import httpx
import pytest

from control_plane.app import ApiServices, create_app
from control_plane.services.auth import AuthService
from tests.integration.api.helpers import Api
from tests.integration.console.helpers import COOKIE, browser, csrf_of, sign_in, signed_in

pytestmark = pytest.mark.anyio


def _cookie_flags(response: httpx.Response) -> dict[str, str]:
    header = response.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}="), header
    flags: dict[str, str] = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        flags[name.lower()] = value
    return flags


async def test_signing_in_with_a_valid_token_sets_an_http_only_strict_cookie_scoped_to_the_console(
        api: Api) -> None:
    async with browser(api) as client:
        response = await sign_in(client, api.tokens["viewer"])
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/executions"
        flags = _cookie_flags(response)
        assert "httponly" in flags and flags["samesite"].lower() == "strict" and flags["path"] == "/ui"
        assert "secure" not in flags  # served over plain http here
        assert 0 < int(flags["max-age"]) <= 12 * 3600
        page = await client.get("/ui/executions")
    assert page.status_code == 200
    assert "Signed in as <strong>test-viewer</strong> (viewer)" in page.text
    assert api.tokens["viewer"] not in page.text
    assert api.tokens["viewer"] not in response.headers["set-cookie"]


async def test_the_session_cookie_is_secure_when_the_console_is_served_over_https(api: Api) -> None:
    app = create_app(ApiServices.from_stack(api.stack))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console.test",
                                 headers={"Origin": "https://console.test"}) as client:
        response = await sign_in(client, api.tokens["viewer"])
    assert response.status_code == 303, response.text
    assert "secure" in _cookie_flags(response)


async def test_a_wrong_token_gets_the_form_again_with_the_reason_and_no_session(api: Api) -> None:
    async with browser(api) as client:
        response = await sign_in(client, "noetl_" + "A" * 43)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "not valid (unknown or revoked)" in response.text
    assert 'name="token"' in response.text


async def test_a_page_without_a_session_leads_to_the_sign_in_form_and_back(api: Api) -> None:
    async with browser(api) as client:
        response = await client.get("/ui/proposals?state=proposed")
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/sign-in?next=%2Fui%2Fproposals%3Fstate%3Dproposed"
        form = await client.get(response.headers["location"])
        assert 'name="next" value="/ui/proposals?state=proposed"' in form.text
        signed = await sign_in(client, api.tokens["viewer"], "/ui/proposals?state=proposed")
    assert signed.headers["location"] == "/ui/proposals?state=proposed"


async def test_the_sign_in_form_never_leads_to_another_site(api: Api) -> None:
    for target in ("https://evil.example/", "//evil.example/ui", "/api/tokens", "/ui/../api/tokens",
                   "/ui\\..\\x", "javascript:alert(1)"):
        async with browser(api) as client:
            response = await sign_in(client, api.tokens["viewer"], target)
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/executions", target


async def test_a_session_acts_as_its_token_and_ends_when_the_token_is_revoked(api: Api) -> None:
    assert api.stack.store is not None
    info, token = await AuthService(api.stack.store).create_token("soon-revoked-console", "operator")
    async with browser(api) as client:
        assert (await sign_in(client, token)).status_code == 303
        page = await client.get("/ui/executions")
        assert "soon-revoked-console</strong> (operator)" in page.text
        async with api.client("admin") as admin:
            assert (await admin.delete(f"/api/tokens/{info.token_id}")).status_code == 204
        after = await client.get("/ui/executions")
    assert after.status_code == 303 and after.headers["location"].startswith("/ui/sign-in")


async def test_signing_out_ends_the_session_on_the_server(api: Api) -> None:
    async with signed_in(api, "viewer") as client:
        session = client.cookies[COOKIE]
        page = await client.get("/ui/executions")
        response = await client.post("/ui/sign-out", data={"csrf": csrf_of(page.text)})
        assert response.status_code == 303 and response.headers["location"] == "/ui/sign-in"
    async with browser(api, cookies={COOKIE: session}) as replay:  # the old cookie, kept by an attacker
        again = await replay.get("/ui/executions")
    assert again.status_code == 303 and again.headers["location"].startswith("/ui/sign-in")


async def test_a_form_without_this_sessions_csrf_token_is_refused(api: Api) -> None:
    async with signed_in(api, "viewer") as client, signed_in(api, "viewer") as other:
        theirs = csrf_of((await other.get("/ui/executions")).text)
        for form in ({}, {"csrf": ""}, {"csrf": theirs}):
            response = await client.post("/ui/sign-out", data=form)
            assert response.status_code == 403, form
            assert "CSRF token is missing or not this session" in response.text
        still = await client.get("/ui/executions")
    assert still.status_code == 200


async def test_a_form_posted_from_another_origin_is_refused_even_with_the_csrf_token(api: Api) -> None:
    async with signed_in(api, "viewer") as client:
        csrf = csrf_of((await client.get("/ui/executions")).text)
        evil = await client.post("/ui/sign-out", data={"csrf": csrf}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403 and "another origin" in evil.text
        del client.headers["Origin"]
        bare = await client.post("/ui/sign-out", data={"csrf": csrf})
        assert bare.status_code == 403 and "without an Origin or Referer" in bare.text
        referred = await client.post("/ui/sign-out", data={"csrf": csrf},
                                     headers={"Referer": f"{api.url}/ui/executions"})
    assert referred.status_code == 303  # a Referer of this site is enough when no Origin is sent


async def test_the_sign_in_form_itself_refuses_a_post_from_another_origin(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, headers={"Origin": "http://evil.example"}) as client:
        response = await sign_in(client, api.tokens["admin"])
    assert response.status_code == 403 and "set-cookie" not in response.headers


async def test_console_pages_forbid_framing_and_inline_scripts(api: Api) -> None:
    async with browser(api) as client:
        response = await client.get("/ui/sign-in")
        css = await client.get("/ui/static/console.css")
        missing = await client.get("/ui/static/secret.key")
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404
