"""`google_id_token` keychain entries (spec 10): a JWT signed with the service account key, exchanged at a
token endpoint on loopback that checks the signature; an unreachable endpoint fails the execution at its
start with an error naming the entry. No test reaches Google."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from control_plane.stack import Stack
from engine.runtime.google_id_token import JWT_BEARER
from engine.runtime.keychain import KeychainError, KeychainResolver
from tests.harness.http_server import reply_json
from tests.integration.runtime.conftest import stack_config_of
from tests.integration.runtime.test_secrets_and_cancel import all_events_text, run
from tests.integration.tools.conftest import StoredCredentials, free_port

pytestmark = pytest.mark.anyio
AUDIENCE = "https://scorer-abc.a.run.app"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _key_file(private: rsa.RSAPrivateKey,
              email: str = "runner@proj.iam.gserviceaccount.com") -> dict[str, Any]:
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "proj", "private_key_id": "kid-1", "private_key": pem,
            "client_email": email, "token_uri": "https://oauth2.googleapis.com/token"}


class GoogleTokenEndpoint:
    """Google's token endpoint as far as ID tokens go: verifies the RS256 assertion with the service
    account's public key and answers `{"id_token": ...}`; records every assertion's claims."""

    def __init__(self, public: rsa.RSAPublicKey) -> None:
        self.claims: list[dict[str, Any]] = []
        self.headers: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                reply_json(self, *endpoint.answer(form))

            def log_message(self, *args: object) -> None:
                return

        self.public = public
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != [JWT_BEARER] or len(form.get("assertion", [])) != 1:
            return 400, {"error": "unsupported_grant_type"}
        head, body, signature = form["assertion"][0].split(".")
        try:
            self.public.verify(_b64decode(signature), f"{head}.{body}".encode(), padding.PKCS1v15(),
                               hashes.SHA256())
        except InvalidSignature:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        header, claims = json.loads(_b64decode(head)), json.loads(_b64decode(body))
        self.headers.append(header)
        self.claims.append(claims)
        if claims.get("aud") != self.url or not claims.get("target_audience"):
            return 400, {"error": "invalid_grant", "error_description": "bad audience"}
        token_claims = {"aud": claims["target_audience"], "email": claims["iss"],
                        "exp": int(time.time()) + 3600}
        payload = base64.urlsafe_b64encode(json.dumps(token_claims).encode()).decode().rstrip("=")
        id_token = f"eyJhbGciOiJSUzI1NiJ9.{payload}.sig{len(self.claims)}{uuid.uuid4().hex}"
        return 200, {"id_token": id_token}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def service_account() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def google(service_account: rsa.RSAPrivateKey) -> Iterator[GoogleTokenEndpoint]:
    endpoint = GoogleTokenEndpoint(service_account.public_key())
    yield endpoint
    endpoint.close()


def _entry(**fields: Any) -> dict[str, Any]:
    return {"name": "scorer", "kind": "google_id_token", "target_audience": AUDIENCE, **fields}


async def _resolve(resolver: KeychainResolver, execution_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    seen: list[Any] = []
    values = await resolver.resolve(execution_id, [entry], lambda value: value, seen.append)
    assert values["scorer"]["id_token"] in seen  # handed to the runner as a secret to scrub
    return values["scorer"]


async def test_an_id_token_is_minted_with_a_signed_assertion_once_per_execution(
        google: GoogleTokenEndpoint, service_account: rsa.RSAPrivateKey) -> None:
    credentials = StoredCredentials({"gcp_sa": ("gcp", _key_file(service_account))})
    resolver = KeychainResolver(credentials, google_token_url=google.url)
    token = await _resolve(resolver, "exec-1", _entry(auth="gcp_sa"))
    assert token["id_token"] == token["token"] and token["id_token"].startswith("eyJ")
    assert token["expires_at"] > time.time() + 3000
    [claims] = google.claims
    assert claims["iss"] == claims["sub"] == "runner@proj.iam.gserviceaccount.com"
    assert claims["target_audience"] == AUDIENCE and claims["aud"] == google.url
    assert claims["exp"] - claims["iat"] == 3600
    assert google.headers[0] == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    assert await _resolve(resolver, "exec-1", _entry(auth="gcp_sa")) == token  # kept for the execution
    assert len(google.claims) == 1
    await _resolve(resolver, "exec-2", _entry(auth="gcp_sa"))
    assert len(google.claims) == 2


async def test_a_service_account_secret_may_be_the_key_json_or_a_credential_name(
        google: GoogleTokenEndpoint, service_account: rsa.RSAPrivateKey) -> None:
    key = _key_file(service_account)
    credentials = StoredCredentials({"wrapped": ("gcp", {"service_account_json": json.dumps(key)})})
    resolver = KeychainResolver(credentials, google_token_url=google.url)
    await _resolve(resolver, "a", _entry(service_account_secret=json.dumps(key)))
    await _resolve(resolver, "b", _entry(service_account_secret="wrapped"))
    assert len(google.claims) == 2


async def test_a_key_google_does_not_know_is_an_auth_error_naming_the_entry(
        google: GoogleTokenEndpoint) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    resolver = KeychainResolver(StoredCredentials({"gcp_sa": ("gcp", _key_file(stranger))}),
                                google_token_url=google.url)
    with pytest.raises(KeychainError) as caught:
        await _resolve(resolver, "x", _entry(auth="gcp_sa"))
    assert caught.value.kind == "auth" and not caught.value.retryable
    message = str(caught.value)
    assert "keychain 'scorer'" in message and "invalid_grant" in message
    assert "Invalid JWT Signature" in message
    assert "PRIVATE KEY" not in message


async def test_a_credential_without_a_service_account_key_is_a_validation_error() -> None:
    user = {"refresh_token": "r", "client_id": "c"}  # user credentials, not a service account key
    resolver = KeychainResolver(StoredCredentials({"user": ("gcp", user)}))
    with pytest.raises(KeychainError) as caught:
        await _resolve(resolver, "x", _entry(auth="user"))
    assert caught.value.kind == "validation" and "client_email" in str(caught.value)


# ------------------------------------------------------------------------------------------ through a stack
@pytest.fixture
async def google_stack(runtime_env: dict[str, str], google: GoogleTokenEndpoint) -> AsyncIterator[Stack]:
    async with Stack(stack_config_of(runtime_env, workers={"default": 2},
                                     google_token_url=google.url)) as running:
        yield running


@pytest.fixture
async def offline_stack(runtime_env: dict[str, str]) -> AsyncIterator[Stack]:
    """A deployment whose Google token endpoint is a closed local port (Google unreachable)."""
    url = f"http://127.0.0.1:{free_port()}/token"
    async with Stack(stack_config_of(runtime_env, workers={"default": 2}, google_token_url=url)) as running:
        yield running


async def test_a_step_sends_the_minted_token_and_no_event_holds_it(
        google_stack: Stack, google: GoogleTokenEndpoint, service_account: rsa.RSAPrivateKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOETL_TEST_GOOGLE_SA", json.dumps(_key_file(service_account)))
    summary = await run(google_stack, f"""\
        keychain:
          - {{name: sa, kind: secrets, provider: env, map: {{json: NOETL_TEST_GOOGLE_SA}}}}
          - name: scorer
            kind: google_id_token
            service_account_secret: "{{{{ keychain.sa.json }}}}"
            target_audience: {AUDIENCE}
        workflow:
          - step: call
            tool:
              kind: python
              input: {{header: "Bearer {{{{ keychain.scorer.id_token }}}}"}}
              code: "result = {{'bearer': header.startswith('Bearer eyJ'), 'echo': header}}"
            next: again
          - step: again
            tool: {{kind: python, input: {{t: "{{{{ keychain.scorer.token }}}}"}}, code: "result = len(t)"}}
        """)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["call"]["result"]["bearer"] is True
    assert summary["steps"]["call"]["result"]["echo"] == "Bearer ***"
    assert len(google.claims) == 1  # minted once, at execution start
    text = await all_events_text(google_stack, summary["execution_id"])
    assert "eyJhbGciOiJSUzI1NiJ9." not in text and "PRIVATE KEY" not in text


async def test_an_unreachable_google_fails_the_execution_at_its_start_naming_the_entry(
        offline_stack: Stack, service_account: rsa.RSAPrivateKey) -> None:
    assert offline_stack.store is not None
    await offline_stack.store.credentials.set("gcp_sa", "gcp", _key_file(service_account))
    summary = await run(offline_stack, f"""\
        keychain:
          - {{name: scorer, kind: google_id_token, auth: gcp_sa, target_audience: {AUDIENCE}}}
        workflow:
          - step: first
            tool: {{kind: python, code: "result = 'ran'"}}
            next: second
          - step: second
            tool: {{kind: noop}}
        """)
    assert summary["status"] == "failed"
    first = summary["steps"]["first"]
    assert first.get("result") in (None, {}) and first["status"] == "failed"
    error = first["error"]
    assert error["kind"] == "connection" and error["retryable"] is True
    assert "keychain 'scorer'" in error["message"] and "could not be reached" in error["message"]
    assert AUDIENCE in error["message"]
    assert summary["steps"].get("second", {}).get("status") in (None, "not run")


def test_the_token_endpoint_is_a_deployment_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from noetl.settings import stack_config

    monkeypatch.setenv("NOETL_HOME", str(tmp_path))
    monkeypatch.setenv("NOETL_GOOGLE_TOKEN_URL", "http://127.0.0.1:9/token")
    assert stack_config().google_token_url == "http://127.0.0.1:9/token"
    monkeypatch.delenv("NOETL_GOOGLE_TOKEN_URL")
    assert stack_config().google_token_url is None
