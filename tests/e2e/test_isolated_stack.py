"""A failure that takes the whole stack down cannot run on the session's shared stack (every later test
would fail with it), so this module starts a second, private stack (`noetl dev up` under its own
NOETL_HOME) for it, and stops it afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import Noetl, make_playbook

BIG_LOOP = """\
workflow:
  - step: each
    loop: {in: "{{ range(16) | list }}", iterator: k, spec: {mode: parallel}}
    tool: {kind: python, code: "result = 'y' * 70000"}
    next: {arcs: [{step: after}]}
  - step: after
    tool: {kind: python, input: {xs: "{{ each }}"}, code: "result = sum(len(x) for x in xs)"}
"""
HELLO = """\
workflow:
  - step: hello
    tool: {kind: python, code: "result = 'hello'"}
"""


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Noetl]:
    home = tmp_path_factory.mktemp("noetl-private")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOETL_NATS_URL", "NOETL_PG_DSN", "NOETL_SECRET_KEY", "NOETL_BUS_PREFIX",
                        "NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_API_PORT")}
    env["NOETL_HOME"] = str(home)
    cli = Noetl(home=home, scratch=tmp_path_factory.mktemp("private-playbooks"), env=env)
    up = cli("dev", "up", "--api-port", "0", timeout=180)  # never collides with another stack's API
    assert up.returncode == 0, up.stderr
    try:
        yield cli
    finally:
        cli("dev", "down", timeout=120)


def test_a_loop_with_over_one_mib_of_results_feeds_the_next_step_and_the_stack_keeps_serving(
        private_stack: Noetl) -> None:
    code, doc = private_stack.run_json(make_playbook(f"big_loop_{uuid.uuid4().hex[:8]}", BIG_LOOP),
                                       run_timeout=12)
    assert (code, doc["status"]) == (0, "completed"), doc
    assert doc["steps"]["after"]["result"] == 16 * 70000
    code, doc = private_stack.run_json(make_playbook(f"after_big_loop_{uuid.uuid4().hex[:8]}", HELLO),
                                       run_timeout=12)
    assert (code, doc["status"]) == (0, "completed"), doc
