"""A credential's value never leaves the server: not in any answer of the API (executions, events, the
stream, credentials) and not in any log record, even when a step uses it and fails."""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from tests.integration.api.helpers import Api, execute, playbook, register, unique, wait_ended

pytestmark = pytest.mark.anyio
CANARY = "canary-" + uuid.uuid4().hex


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_credential_used_by_failing_steps_appears_in_no_answer_and_no_log_record(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    async with api.client("admin") as admin:
        stored = await admin.put("/api/credentials/canary_pg", json={
            "type": "postgres", "description": "points nowhere",
            "data": {"db_host": "127.0.0.1", "db_port": unused_port(), "db_user": "noetl",
                     "db_password": CANARY, "db_name": "nothing"}})
        assert stored.status_code == 200, stored.text
        bodies.append(stored.text)

        connect = unique("canary_connect")
        await register(admin, playbook(connect, """\
            workflow:
              - step: query
                tool: {kind: postgres, auth: canary_pg, command: "SELECT 1"}
            """))
        leak = unique("canary_leak")
        await register(admin, playbook(leak, """\
            keychain: [{name: pg, kind: credential, ref: canary_pg}]
            workflow:
              - step: echo
                tool:
                  kind: python
                  input: {password: "{{ keychain.pg.db_password }}"}
                  code: "raise ValueError('the password is ' + password)"
            """))
        ids = [await execute(admin, connect), await execute(admin, leak)]
        for execution_id in ids:
            execution = await wait_ended(admin, execution_id)
            assert execution["status"] == "failed"
        queried = (await admin.get(f"/api/executions/{ids[0]}")).json()["steps"]["query"]
        assert queried["error"]["kind"] in ("db_connection", "auth")  # it did try to connect
        echoed = (await admin.get(f"/api/executions/{ids[1]}")).json()["steps"]["echo"]
        assert "***" in echoed["error"]["message"]  # the value was there, and redacted

        for execution_id in ids:
            for url in (f"/api/executions/{execution_id}",
                        f"/api/executions/{execution_id}/events?limit=1000"):
                bodies.append((await admin.get(url)).text)
            async with admin.stream("GET", f"/api/executions/{execution_id}/stream") as response:
                bodies.append((await response.aread()).decode())
        for url in ("/api/executions", "/api/credentials", "/api/credentials/canary_pg", "/metrics",
                    f"/api/catalog/playbook?path={leak}"):
            bodies.append((await admin.get(url)).text)

    assert len(bodies) == 12 and all(bodies)
    for body in bodies:
        assert CANARY not in body
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [r for r in caplog.records if CANARY in formatter.format(r) or CANARY in repr(r.args)]
    assert logged == []
    assert caplog.records  # the server did log while it worked
