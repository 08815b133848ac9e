"""`noetl ui`: a one-time sign-in link to the web console of the session's dev stack, for NOETL_TOKEN's
identity (or, against the dev stack itself, the token it made for this home's command line)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import httpx

from tests.e2e.helpers import Noetl

COOKIE = "noetl_session"


def _api_url(cli: Noetl) -> str:
    return str(json.loads((cli.home / "dev.json").read_text())["api_url"])


def _token(cli: Noetl, role: str) -> tuple[str, str]:
    name = f"e2e-ui-{role}-{uuid.uuid4().hex[:6]}"
    result = cli("token", "create", "--role", role, "--name", name, "--json")
    assert result.returncode == 0, result.stderr
    return name, str(json.loads(result.stdout)["token"])


def _with(cli: Noetl, drop: tuple[str, ...] = (), **env: str) -> Noetl:
    kept = {k: v for k, v in cli.env.items() if k not in drop}
    return replace(cli, env={**kept, **env})


def _signed_in_page(url: str) -> tuple[httpx.Response, str]:
    """Follow the link as a browser would: the redirect, then the page it leads to with the cookie."""
    with httpx.Client(timeout=30) as browser:
        landing = browser.get(url)
        assert landing.status_code == 303, landing.text
        assert COOKIE in browser.cookies
        page = browser.get(httpx.URL(url).join(landing.headers["location"]))
        return landing, page.text


def test_noetl_ui_print_url_prints_a_link_that_signs_in_once_as_the_token(noetl: Noetl) -> None:
    name, token = _token(noetl, "approver")
    cli = _with(noetl, NOETL_SERVER_URL=_api_url(noetl), NOETL_TOKEN=token)
    result = cli("ui", "--print-url", "--path", "/ui/proposals")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith(_api_url(noetl) + "/ui/sign-in/link?code=")
    landing, page = _signed_in_page(url)
    assert landing.headers["location"] == "/ui/proposals"
    assert f"Signed in as <strong>{name}</strong> (approver)" in page
    with httpx.Client(timeout=30) as again:
        assert again.get(url).status_code == 401  # used once already


def test_noetl_ui_against_the_dev_stack_uses_its_command_line_token_when_no_token_is_set(
        noetl: Noetl) -> None:
    cli = _with(noetl, drop=("NOETL_SERVER_URL", "NOETL_TOKEN"))
    result = cli("ui", "--print-url")
    assert result.returncode == 0, result.stderr
    _, page = _signed_in_page(result.stdout.strip())
    assert "(operator)" in page


def test_noetl_ui_without_a_token_says_how_to_get_one(noetl: Noetl) -> None:
    cli = _with(noetl, drop=("NOETL_TOKEN",), NOETL_SERVER_URL=_api_url(noetl))
    result = cli("ui", "--print-url")
    assert result.returncode == 3 and result.stdout == ""
    assert "NOETL_TOKEN is not set" in result.stderr and "noetl token create" in result.stderr


def test_noetl_ui_with_the_server_down_says_so_and_how_to_fix_it(noetl: Noetl) -> None:
    _, token = _token(noetl, "viewer")
    cli = _with(noetl, NOETL_SERVER_URL="http://127.0.0.1:9", NOETL_TOKEN=token)
    result = cli("ui", "--print-url")
    assert result.returncode == 3 and result.stdout == ""
    assert "cannot reach the NoETL server at http://127.0.0.1:9" in result.stderr
    assert "noetl dev up" in result.stderr


def test_noetl_ui_refuses_a_path_outside_the_console(noetl: Noetl) -> None:
    _, token = _token(noetl, "viewer")
    cli = _with(noetl, NOETL_SERVER_URL=_api_url(noetl), NOETL_TOKEN=token)
    result = cli("ui", "--print-url", "--path", "https://evil.example/")
    assert result.returncode == 2 and result.stdout == ""
    assert "is not a path of the console" in result.stderr
