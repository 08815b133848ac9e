"""Keychain scopes across playbook calls (spec 10): `shared` entries reach children, `local` ones do not."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from typing import Any

import pytest

from control_plane.stack import Stack
from tests.integration.runtime.test_oauth import TokenServer, token_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio

# keychain values are redacted from results: the child returns fingerprints of what it read
READ_KEYCHAIN = """\
    workflow:
      - step: read
        tool:
          kind: python
          input:
            v: "{{ keychain.k.v }}"
            word: "{{ keychain.w.word | default('absent') }}"
            loc: "{{ keychain.loc.v | default('absent') }}"
          code: |
            import hashlib
            result = {name: hashlib.sha256(value.encode()).hexdigest()[:12]
                      for name, value in (('v', v), ('word', word), ('loc', loc))}
    """


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


async def register(stack: Stack, body: str, workload: str = "") -> str:
    assert stack.executions is not None
    name = f"k_{uuid.uuid4().hex[:8]}"
    text = (f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}}}\n{workload}"
            + textwrap.dedent(body))
    return (await stack.executions.register(text)).path


async def run(stack: Stack, path: str) -> dict[str, Any]:
    assert stack.executions is not None
    execution_id = await stack.executions.start(path)
    return await stack.executions.wait(execution_id, timeout_s=60)


def parent_calling(child: str, keychain: str) -> str:
    return f"""\
        keychain:
{textwrap.indent(textwrap.dedent(keychain), " " * 10)}
        workflow:
          - step: call
            tool: {{kind: playbook, path: {child}, return_step: read}}
        """


async def test_a_child_reads_its_parents_shared_entries_in_the_parents_context_but_not_its_local_ones(
        stack: Stack) -> None:
    child = await register(stack, READ_KEYCHAIN, "workload: {word: child-word}\n")
    parent = await register(stack, parent_calling(child, """\
        - {name: k, kind: static, scope: shared, map: {v: x}}
        - {name: w, kind: static, scope: shared, map: {word: "{{ workload.word }}"}}
        - {name: loc, kind: static, scope: local, map: {v: local-value}}
        """), "workload: {word: parent-word}\n")
    summary = await run(stack, parent)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["call"]["result"] == {"v": fingerprint("x"), "word": fingerprint("parent-word"),
                                                "loc": fingerprint("absent")}


async def test_a_childs_own_entry_wins_over_a_shared_entry_of_the_same_name(stack: Stack) -> None:
    child = await register(stack, "keychain:\n  - {name: k, kind: static, map: {v: mine}}\n"
                           + textwrap.dedent(READ_KEYCHAIN))
    parent = await register(stack, parent_calling(child, """\
        - {name: k, kind: static, scope: shared, map: {v: parents}}
        """))
    summary = await run(stack, parent)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["call"]["result"]["v"] == fingerprint("mine")


async def test_a_local_entry_of_the_parent_is_undefined_in_the_child(stack: Stack) -> None:
    child = await register(stack, """\
        workflow:
          - step: read
            tool: {kind: python, input: {v: "{{ keychain.loc.v }}"}, code: "result = v"}
        """)
    parent = await register(stack, parent_calling(child, """\
        - {name: loc, kind: static, map: {v: local-value}}
        """))
    summary = await run(stack, parent)
    assert summary["status"] == "failed"
    error = summary["steps"]["call"]["error"]
    assert error["kind"] == "undefined_variable" and "keychain.loc" in error["message"], error


async def test_a_grandchild_inherits_the_shared_entries_its_parent_inherited(stack: Stack) -> None:
    grandchild = await register(stack, READ_KEYCHAIN)
    child = await register(stack, f"""\
        workflow:
          - step: read
            tool: {{kind: playbook, path: {grandchild}, return_step: read}}
        """)
    parent = await register(stack, parent_calling(child, """\
        - {name: k, kind: static, scope: shared, map: {v: from-the-top}}
        """))
    summary = await run(stack, parent)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["call"]["result"]["v"] == fingerprint("from-the-top")


async def test_a_shared_oauth2_entry_mints_one_token_for_the_parent_and_its_children(
        stack: Stack, token_server: TokenServer) -> None:  # noqa: F811
    use_token = """{kind: python, input: {t: "{{ keychain.api.access_token }}"}, code: "result = t[:4]"}"""
    child = await register(stack, f"""\
        workflow:
          - step: read
            tool: {use_token}
        """)
    parent = await register(stack, f"""\
        keychain:
          - name: api
            kind: oauth2
            scope: shared
            endpoint: {token_server.url}
            data: {{grant_type: client_credentials, client_id: app, client_secret: s3cret-client}}
        workflow:
          - step: own
            tool: {use_token}
            next: call
          - step: call
            loop: {{in: [1, 2], iterator: n}}
            tool: {{kind: playbook, path: {child}, return_step: read}}
        """)
    summary = await run(stack, parent)
    assert summary["status"] == "completed", summary
    assert summary["steps"]["own"]["result"] == "tok-"
    assert len(token_server.requests) == 1  # the parent's token, reused by both children
