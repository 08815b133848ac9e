"""End-to-end fixtures: ONE background NoETL stack (`noetl dev up`) for the whole session, driven only
through the command line, the way a user drives it.

`noetl(*args, payload=None)` runs `python -m noetl.cli ...` with NOETL_HOME set to the session's home;
`run_json(path_or_text, payload=None)` runs a playbook (a file, or inline text written to a file) with
`noetl run --json` and returns (exit code, document); `events(ID)` reads `noetl events ID --json`;
`playbook(body)` builds an inline playbook whose catalog name and path are unique to the calling test.
Nothing here sleeps to wait: every wait is a bounded subprocess or a bounded poll.

When the session's stack is torn down (after every test that used it, whatever the file order), every
execution it ran is replayed through the pure net and checked (tests/e2e/replay.py): a difference is an
error at that teardown, and the run fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.helpers import Doc, Event, Noetl, dev_stack, make_playbook, unique_name
from tests.e2e.replay import check_session

WORKER_CONCURRENCY = 8  # steps the dev stack runs at once: room for the batches of concurrent executions


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Noetl]:
    """`noetl dev up` once under a fresh NOETL_HOME; `noetl dev down` when the session ends.

    The stack serves its REST API on a free port; its URL is `api_url` in NOETL_HOME/dev.json. Before it
    goes down, the replay check runs over every execution of the session (`check_session`)."""
    with dev_stack(tmp_path_factory.mktemp("noetl"), tmp_path_factory.mktemp("playbooks"),
                   WORKER_CONCURRENCY) as cli:
        yield cli
        check_session(cli.home)


@pytest.fixture
def noetl(e2e_stack: Noetl) -> Noetl:
    """The CLI: `noetl("status", ID, "--json")`; also `.run_json`, `.run_many`, `.events`."""
    return e2e_stack


@pytest.fixture
def run_json(e2e_stack: Noetl) -> Callable[..., tuple[int, Doc]]:
    return e2e_stack.run_json


@pytest.fixture
def events(e2e_stack: Noetl) -> Callable[[str], list[Event]]:
    return e2e_stack.events


@pytest.fixture
def playbook(request: pytest.FixtureRequest) -> Callable[..., str]:
    """`playbook(body, suffix="")` -> playbook text whose metadata name/path are unique to this test."""
    base = unique_name(request)

    def build(body: str, suffix: str = "") -> str:
        return make_playbook(f"{base}_{suffix}" if suffix else base, body)

    return build


