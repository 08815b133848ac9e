"""`noetl run` against a running dev stack goes through its REST API (noetl.fastrun), and prints and exits
exactly as the full path does (NOETL_FAST_RUN=0); whatever it does not take, the full path does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from engine.protocol.tracecontext import trace_id_for
from tests.conftest import REPO
from tests.e2e.helpers import CLI_TIMEOUT_S, Noetl, make_playbook

ID = re.compile(r"\b\d{19}\b")
TRACE = "noetl run: "
COMPLETING = """\
    workflow:
      - step: first
        tool: {kind: python, code: "result = {'rows': [1, 2, 3]}"}
        next: [{step: second}]
      - step: second
        tool: {kind: noop}
    """
FAILING = """\
    workflow:
      - step: boom
        tool: {kind: python, code: "raise ValueError('no good')"}
    """
SLOW = """\
    workflow:
      - step: nap
        tool: {kind: python, code: "import time; time.sleep(20); result = 1"}
    """
INVALID = """\
    workflow:
      - step: only
        tool: {kind: nope}
        next: [{step: missing}]
    """
# an API that refuses connections: a port nothing listens on (the dev stack's own state otherwise)
CLOSED_PORT_URL = "http://127.0.0.1:9"


Done = subprocess.CompletedProcess[str]


def _both(cli: Noetl, *args: str) -> tuple[Done, Done]:
    """The same command through the fast path (traced) and through the full path."""
    fast = replace(cli, env={**cli.env, "NOETL_FAST_RUN_TRACE": "1"})(*args)
    full = replace(cli, env={**cli.env, "NOETL_FAST_RUN": "0"})(*args)
    return fast, full


def _shown(stderr: str) -> str:
    """What a person sees on stderr, the ids aside (and the fast path's trace lines)."""
    kept = (line for line in stderr.splitlines(keepends=True) if not line.startswith(TRACE))
    return ID.sub("ID", "".join(kept))


def _paths(stderr: str) -> list[str]:
    return [line[len(TRACE):] for line in stderr.splitlines() if line.startswith(TRACE)]


def _document(done: Done) -> dict[str, object]:
    doc = json.loads(done.stdout)
    assert isinstance(doc, dict), done.stdout
    execution_id = str(doc.pop("execution_id"))
    assert ID.fullmatch(execution_id)
    assert doc.pop("trace_id") == trace_id_for(execution_id)  # derived from the id, as the log has it
    return doc


def test_a_completing_run_prints_the_same_document_and_exits_0_through_the_api(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_completing", COMPLETING))
    fast, full = _both(e2e_stack, "run", str(file), "--json", "--payload", '{"x": 1}')
    assert (fast.returncode, full.returncode) == (0, 0), fast.stderr + full.stderr
    assert _paths(fast.stderr) == ["fast path"]
    assert _document(fast) == _document(full)
    assert fast.stdout.startswith('{\n  "execution_id": ')  # the same indentation and key order
    assert _shown(fast.stderr) == _shown(full.stderr)


def test_a_completing_run_shows_the_same_progress_and_result_lines_as_the_full_path(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_progress", COMPLETING))
    fast, full = _both(e2e_stack, "run", str(file))
    assert (fast.returncode, full.returncode) == (0, 0), fast.stderr + full.stderr
    assert _paths(fast.stderr) == ["fast path"]
    assert _shown(fast.stderr) == _shown(full.stderr)
    assert _shown(fast.stderr).splitlines() == [
        "execution ID", "✔ first succeeded", "✔ second succeeded", "execution ID completed", "result: {}"]


def test_a_failing_run_prints_the_same_document_and_error_and_exits_1(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_failing", FAILING))
    fast, full = _both(e2e_stack, "run", str(file), "--json")
    assert (fast.returncode, full.returncode) == (1, 1), fast.stderr + full.stderr
    assert _paths(fast.stderr) == ["fast path"]
    assert _document(fast) == _document(full)
    shown_fast, shown_full = _both(e2e_stack, "run", str(file))
    assert (shown_fast.returncode, shown_full.returncode) == (1, 1)
    assert _shown(shown_fast.stderr) == _shown(shown_full.stderr)
    assert "error: {'kind': 'python_exception'" in shown_fast.stderr


def test_an_invalid_playbook_gets_the_full_paths_diagnostics_and_exit_2(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_invalid", INVALID))
    fast, full = _both(e2e_stack, "run", str(file), "--json")
    assert (fast.returncode, full.returncode) == (2, 2)
    assert _paths(fast.stderr) == ["full path (the API answered 422 to the registration)"]
    assert (fast.stdout, _shown(fast.stderr)) == (full.stdout, _shown(full.stderr))
    assert f"{file}:6:18 workflow[0].tool.kind: unknown tool kind 'nope'" in fast.stderr


def test_a_timeout_that_ends_first_prints_the_same_document_and_line_and_exits_4(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_timeout", SLOW))
    # 3 s: time enough for the step to have started in both runs on a busy machine (their documents show it
    # running), far less than its 20 s
    fast, full = _both(e2e_stack, "run", str(file), "--json", "--timeout", "3")
    assert (fast.returncode, full.returncode) == (4, 4), fast.stderr + full.stderr
    assert _paths(fast.stderr) == ["fast path"]
    assert _document(fast) == _document(full)
    assert _shown(fast.stderr) == _shown(full.stderr)
    assert "did not finish within 3 s; it is still running" in fast.stderr


def test_the_fast_path_imports_neither_the_engine_nor_pydantic(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_imports", COMPLETING))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "noetl.cli", "run", str(file)],
                          capture_output=True, text=True, env={**e2e_stack.env, "NOETL_FAST_RUN_TRACE": "1"},
                          cwd=REPO, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "noetl run: fast path" in done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    heavy = {"pydantic", "typer", "psycopg", "nats", "engine.net", "engine.dsl", "control_plane"}
    assert imported & heavy == set()
    assert "engine.protocol.ids" in imported  # the one engine module it takes: the execution's id


def test_an_api_that_refuses_connections_leaves_the_run_to_the_full_path(e2e_stack: Noetl,
                                                                          tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state = json.loads((e2e_stack.home / "dev.json").read_text())
    (home / "dev.json").write_text(json.dumps({**state, "api_url": CLOSED_PORT_URL}))
    (home / "dev-cli-token").write_text("noetl_not-a-token")
    (home / "secret.key").write_bytes((e2e_stack.home / "secret.key").read_bytes())
    (home / "secret.key").chmod(0o600)
    cli = replace(e2e_stack, home=home, env={**e2e_stack.env, "NOETL_HOME": str(home),
                                              "NOETL_FAST_RUN_TRACE": "1"})
    file = e2e_stack.write(make_playbook("fast_refused", COMPLETING))
    done = cli("run", str(file), "--json")
    assert done.returncode == 0, done.stderr
    [path] = _paths(done.stderr)
    assert path.startswith("full path (the API did not register the playbook (")
    assert json.loads(done.stdout)["status"] == "completed"


def test_an_event_stream_cut_after_the_start_is_followed_to_its_end_by_the_full_path(
        e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_handoff", COMPLETING))
    cut = ("import sys\nfrom noetl import fastrun\nfrom noetl.stdio import use_whole_writes\n"
           "use_whole_writes()\nseen = []\nclass Cut(fastrun.StreamedEvent):\n"
           "    def __init__(self, item):\n        seen.append(item)\n"
           "        if len(seen) == 2:\n            raise OSError('cut on purpose')\n"
           "        super().__init__(item)\n"
           "fastrun.StreamedEvent = Cut\nsys.exit(fastrun.attempt(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", cut, "run", str(file)], capture_output=True, text=True,
                          env={**e2e_stack.env, "NOETL_FAST_RUN_TRACE": "1"}, cwd=REPO,
                          timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert _paths(done.stderr) == ["fast path", "the full path follows on (cut on purpose)"]
    shown = _shown(done.stderr).splitlines()
    assert shown == ["execution ID", "✔ first succeeded", "✔ second succeeded", "execution ID completed",
                     "result: {}"]
    [execution_id] = set(ID.findall(done.stderr))  # one execution, started once
    assert json.loads(e2e_stack("status", execution_id, "--json").stdout)["status"] == "completed"


def test_the_off_switch_always_takes_the_full_path(e2e_stack: Noetl) -> None:
    file = e2e_stack.write(make_playbook("fast_off", COMPLETING))
    done = replace(e2e_stack, env={**e2e_stack.env, "NOETL_FAST_RUN": "0", "NOETL_FAST_RUN_TRACE": "1"})(
        "run", str(file), "--json")
    assert done.returncode == 0, done.stderr
    assert _paths(done.stderr) == ["full path (NOETL_FAST_RUN=0)"]
