"""OAuth2 keychain entries and `token(name)` (spec 10) against a real token endpoint on loopback."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from control_plane.stack import Stack
from tests.harness.http_server import reply_json
from tests.integration.runtime.test_secrets_and_cancel import all_events_text, run

pytestmark = pytest.mark.anyio


class TokenServer:
    """Issues `tok-<n>` for client_credentials with the right secret; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                form = parse_qs(body)
                server.requests.append(form)
                if form.get("client_secret") != ["s3cret-client"]:
                    self.send_response(401)
                    self.end_headers()
                    return
                reply_json(self, 200, {"access_token": f"tok-{len(server.requests)}-{uuid.uuid4().hex[:6]}",
                                       "expires_in": 3600, "token_type": "Bearer"})

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.close()


async def test_an_oauth2_keychain_entry_requests_one_token_per_execution(stack: Stack,
                                                                        token_server: TokenServer) -> None:
    summary = await run(stack, f"""\
        keychain:
          - name: api
            kind: oauth2
            endpoint: {token_server.url}
            data: {{grant_type: client_credentials, client_id: app, client_secret: s3cret-client}}
        workflow:
          - step: one
            tool: {{kind: python, input: {{t: "{{{{ keychain.api.access_token }}}}"}},
                    code: "result = t.startswith('tok-')"}}
            next: two
          - step: two
            tool: {{kind: python, input: {{t: "{{{{ keychain.api.access_token }}}}"}},
                    code: "result = len(t)"}}
        """)
    assert summary["status"] == "completed"
    assert summary["steps"]["one"]["result"] is True
    assert len(token_server.requests) == 1  # kept for the execution, not requested per step
    text = await all_events_text(stack, summary["execution_id"])
    assert "tok-1-" not in text  # the token is a secret; the playbook's own literals are its text


async def test_token_of_a_stored_oauth_credential_is_a_bearer_token(stack: Stack,
                                                                   token_server: TokenServer) -> None:
    assert stack.store is not None
    await stack.store.credentials.set("svc_oauth", "oauth2", {
        "token_url": token_server.url, "client_id": "app", "client_secret": "s3cret-client"})
    summary = await run(stack, """\
        workflow:
          - step: call
            tool:
              kind: python
              input: {header: "Bearer {{ token('svc_oauth') }}"}
              code: "result = header.startswith('Bearer tok-')"
        """)
    assert summary["status"] == "completed" and summary["steps"]["call"]["result"] is True
    assert token_server.requests[0]["grant_type"] == ["client_credentials"]


async def test_a_refused_token_request_fails_the_step_with_auth(stack: Stack,
                                                                 token_server: TokenServer) -> None:
    summary = await run(stack, f"""\
        keychain:
          - name: api
            kind: oauth2
            endpoint: {token_server.url}
            data: {{grant_type: client_credentials, client_id: app, client_secret: wrong}}
        workflow:
          - {{step: a, tool: {{kind: noop}}}}
        """)
    assert summary["status"] == "failed"
    error = summary["steps"]["a"]["error"]
    assert error["kind"] == "auth" and "401" in error["message"]
