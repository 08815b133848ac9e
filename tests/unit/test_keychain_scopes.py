"""Keychain scopes across executions (spec 10): what a child inherits, what its commands carry, which
tokens are minted once."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

import httpx
import pytest

from engine.net.fire import FireEnv, fire
from engine.net.state import ExecutionState
from engine.net.validate import validate_text
from engine.protocol.commands import RunStep, StartChild
from engine.protocol.events import Event
from engine.runtime.keychain import KeychainResolver
from engine.tools.base import NoCredentials

HEAD = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: t}\n"
KEYCHAIN = """\
keychain:
  - {name: shared_static, kind: static, scope: shared, map: {v: x}}
  - {name: shared_templated, kind: static, scope: shared, map: {word: "{{ workload.word }}"}}
  - {name: local_one, kind: static, map: {v: y}}
  - {name: global_one, kind: static, scope: global, map: {v: z}}
"""


def commands(body: str, keychain: tuple[dict[str, Any], ...] = (), execution_id: str = "parent-1",
             ) -> list[RunStep | StartChild]:
    result = validate_text(HEAD + textwrap.dedent(body))
    assert result.net is not None, [d.format() for d in result.diagnostics]
    event = Event(event_id=uuid.uuid4().hex, idempotency_key=uuid.uuid4().hex, execution_id=execution_id,
                  type="execution.started", payload={"payload": {}})
    decision = fire(result.net, ExecutionState(execution_id), event, FireEnv(keychain=keychain))
    return [c for c in decision.commands if isinstance(c, RunStep | StartChild)]


CALL = "workload: {word: hello}\nworkflow:\n  - step: call\n    tool: {kind: playbook, path: child}\n"
RUN = "workflow:\n  - step: run\n    tool: {kind: noop}\n"


def test_a_playbook_call_passes_only_its_shared_entries_to_the_child_with_itself_as_owner() -> None:
    [start] = commands(KEYCHAIN + CALL)
    assert isinstance(start, StartChild)
    assert [e["name"] for e in start.keychain] == ["shared_static", "shared_templated"]
    plain, templated = start.keychain
    assert plain["owner"] == {"execution_id": "parent-1"}  # no templates: no workload to carry
    assert templated["owner"] == {"execution_id": "parent-1", "workload": {"word": "hello"}}


def test_a_childs_commands_carry_the_inherited_entries_first_and_its_own_entries_replace_them_by_name(
        ) -> None:
    inherited = ({"name": "a", "kind": "static", "scope": "shared", "map": {"v": 1},
                  "owner": {"execution_id": "parent-1"}},
                 {"name": "b", "kind": "static", "scope": "shared", "map": {"v": 2},
                  "owner": {"execution_id": "parent-1"}})
    [run] = commands("keychain:\n  - {name: b, kind: static, map: {v: own}}\n" + RUN, inherited, "child-1")
    assert isinstance(run, RunStep)
    assert [(e["name"], e["map"]["v"]) for e in run.keychain] == [("a", 1), ("b", "own")]


def test_a_child_passes_on_what_it_inherited_keeping_the_original_owner() -> None:
    inherited = ({"name": "a", "kind": "static", "scope": "shared", "map": {"v": 1},
                  "owner": {"execution_id": "grandparent"}},)
    [start] = commands("keychain:\n  - {name: mine, kind: static, scope: shared, map: {v: 2}}\n" + CALL,
                       inherited, "child-1")
    assert isinstance(start, StartChild)
    assert [(e["name"], e["owner"]["execution_id"]) for e in start.keychain] == [
        ("a", "grandparent"), ("mine", "child-1")]


def test_a_child_without_inherited_entries_and_a_parent_without_shared_ones_pass_nothing() -> None:
    [start] = commands("keychain:\n  - {name: l, kind: static, map: {v: 1}}\n" + CALL)
    assert isinstance(start, StartChild) and start.keychain == []


class TokenEndpoint:
    """A token endpoint on an httpx mock transport that counts the tokens it issued."""

    def __init__(self) -> None:
        self.issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.issued += 1
        return httpx.Response(200, json={"access_token": f"tok-{self.issued}", "expires_in": 3600})


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_shared_token_is_minted_once_for_its_owner_and_the_executions_that_inherit_it(
        anyio_backend: str) -> None:
    endpoint = TokenEndpoint()
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as http:
        resolver = KeychainResolver(NoCredentials(), http=http)
        entry = {"name": "api", "kind": "oauth2", "scope": "shared", "endpoint": "http://token/"}
        local = {"name": "loc", "kind": "oauth2", "endpoint": "http://token/"}

        async def resolve(execution_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
            return await resolver.resolve(execution_id, entries, lambda v: v, lambda v: None)

        parent = await resolve("parent-1", [entry, local])
        child = await resolve("child-1", [{**entry, "owner": {"execution_id": "parent-1"}}])
        sibling = await resolve("child-2", [{**entry, "owner": {"execution_id": "parent-1"}}])
        other = await resolve("other-1", [entry, local])
    assert parent["api"]["access_token"] == child["api"]["access_token"] == sibling["api"]["access_token"]
    assert other["api"]["access_token"] != parent["api"]["access_token"]  # another execution's own
    assert endpoint.issued == 4  # parent api + parent loc, other api + other loc


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_inherited_entry_renders_with_its_owners_context(anyio_backend: str) -> None:
    resolver = KeychainResolver(NoCredentials())
    seen: list[tuple[str, Any]] = []

    def render(value: Any) -> Any:
        seen.append(("child", value))
        return value

    def render_owned(owner: dict[str, Any], value: Any) -> Any:
        seen.append((owner["execution_id"], value))
        return {"word": owner["workload"]["word"]}

    entries = [{"name": "w", "kind": "static", "scope": "shared", "map": {"word": "{{ workload.word }}"},
                "owner": {"execution_id": "parent-1", "workload": {"word": "hello"}}},
               {"name": "own", "kind": "static", "map": {"v": 1}}]
    out = await resolver.resolve("child-1", entries, render, lambda v: None, render_owned=render_owned)
    assert out == {"w": {"word": "hello"}, "own": {"v": 1}}
    assert [who for who, _ in seen] == ["parent-1", "child"]
