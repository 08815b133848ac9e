"""`noetl ask`: questions about runs in plain words from the command line, locally (the chat in the
command's own process, over the dev stack's Postgres) and through a server (NOETL_SERVER_URL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.helpers import Noetl
from tests.e2e.test_cli_client import Api, api  # noqa: F401  (the fixture: tokens of each role)

RESET = """\
workflow:
  - step: charge_cards
    tool:
      kind: python
      code: |
        raise ConnectionError("connection reset by the card processor (peer closed the socket)")
"""


def ask(cli: Noetl, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("ask", *args, "--json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def failed(noetl: Noetl, playbook: Callable[..., str]) -> str:
    code, doc = noetl.run_json(playbook(RESET))
    assert (code, doc["status"]) == (1, "failed"), doc
    return str(doc["execution_id"])


def test_asking_locally_why_a_run_failed_answers_with_its_root_cause_and_keeps_the_conversation(
        noetl: Noetl, failed: str) -> None:
    code, first = ask(noetl, f"why did {failed} fail?", "--no-similar")
    assert code == 0 and first["execution_id"] == failed
    assert first["diagnosis"]["root_cause_type"] == "connection" and "charge_cards" in first["answer"]
    assert first["references"] and all(f"[event {r}]" in first["answer"] for r in first["references"])
    code, second = ask(noetl, "is it transient?", "--conversation", first["conversation_id"], "--no-similar")
    assert code == 0 and second["execution_id"] == failed and second["intent"] == "transient"


def test_the_text_answer_ends_with_how_to_continue_the_conversation(noetl: Noetl, failed: str) -> None:
    result = noetl("ask", f"why did {failed} fail?", "--no-similar")
    assert result.returncode == 0, result.stderr
    assert "connection error at step 'charge_cards'" in result.stdout
    assert "--conversation" in result.stdout.splitlines()[-1]


def test_asking_through_the_server_answers_the_same_and_a_viewer_may_not_propose(
        api: Api, failed: str) -> None:  # noqa: F811
    viewer = api.as_role("viewer")
    code, first = ask(viewer, f"why did {failed} fail?")
    assert code == 0 and first["execution_id"] == failed
    assert first["diagnosis"]["root_cause_type"] == "connection"
    code, refused = ask(viewer, "propose that retry", "--conversation", first["conversation_id"])
    assert code == 0 and "Your role (viewer) may not propose" in refused["answer"]
    assert refused["proposals"] == []


def test_an_unknown_conversation_is_refused_with_exit_two_saying_how_to_begin_one(noetl: Noetl) -> None:
    result = noetl("ask", "is it transient?", "--conversation", "no-such-conversation", "--no-similar")
    assert result.returncode == 2
    assert "no conversation 'no-such-conversation'" in result.stderr and "leave conversation_id out" in \
        result.stderr
