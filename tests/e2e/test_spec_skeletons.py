"""The specification's skeleton examples run: the YAML blocks of sections 1 (a whole playbook), 2 (a step),
7 (a task pipeline with policy rules) and 11 (resources), read from `../shared/spec/playbook.md`.

Those blocks leave parts out with `...` (`description: ...`, `workload: {...}`, `tool: {kind: http,
...}`, `set: {ctx.x: "{{ ... }}"}`, `command: ...`). Each placeholder is filled here, at the path where
it stands, and nothing else in a block is edited; `fill` fails when a block gains or loses a
placeholder, so a change of the specification shows up here. The store task of section 7 elides its
connection with its command, so its `auth` is supplied with the command.

Sections 2 and 11 route steps to a pool named `gpu` (`gpu: 1`, `prefer: [h100, a100]`): this module runs
its own stack whose pools file declares that pool, and a `noetl worker start --pool gpu` serving it."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.helpers import Noetl, dev_stack
from tests.harness.http_server import reply_json, serving

SPEC = REPO.parent / "shared" / "spec" / "playbook.md"
pytestmark = pytest.mark.skipif(not SPEC.is_file(), reason="the specification is not beside this clone")

POOLS = """\
pools:
  - name: default
    labels: [cpu]
    capacity: {cpu: 8}
  - name: gpu
    labels: [gpu, h100]
    capacity: {cpu: 2, gpu: 1, memory_mb: 8192}
"""
PLACEHOLDER = "..."
USERS = {1: "ana", 2: "bo", 3: "cy"}
ITEMS = [{"id": i, "name": f"item-{i}"} for i in range(1, 6)]


def spec_block(heading: str) -> Any:
    """The first YAML block after `heading` in the specification, parsed."""
    text = SPEC.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.search(r"```yaml\n(.*?)```", text[start:], re.DOTALL)
    assert match, f"no YAML block after {heading!r} in {SPEC}"
    return yaml.safe_load(match.group(1))


def placeholders(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where `...` stands: a value `...`, `{...}`, `[...]`, a `...` key beside others, `"{{ ... }}"`."""
    if node == PLACEHOLDER or node == {PLACEHOLDER: None} or node == [PLACEHOLDER] \
            or (isinstance(node, str) and "{{ ... }}" in node):
        return [path]
    found: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        if PLACEHOLDER in node:
            found.append(path)
        for key, value in node.items():
            if key != PLACEHOLDER:
                found += placeholders(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += placeholders(value, path + (i,))
    return found


def fill(block: Any, fills: dict[tuple[Any, ...], Any]) -> Any:
    """`block` with each placeholder replaced by `fills[path]` (a `...` key beside others: merged)."""
    assert sorted(map(str, placeholders(block))) == sorted(map(str, fills)), \
        f"the block's placeholders are {placeholders(block)}; this test fills {list(fills)}"
    block = copy.deepcopy(block)
    for path, value in fills.items():
        parent, last = (None, None) if not path else (_at(block, path[:-1]), path[-1])
        node = block if parent is None else parent[last]
        if isinstance(node, dict) and PLACEHOLDER in node and node != {PLACEHOLDER: None}:
            del node[PLACEHOLDER]
            node.update(value)
        elif parent is None:
            block = value
        else:
            parent[last] = value
    assert not placeholders(block), block
    return block


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


class _Api(BaseHTTPRequestHandler):
    """/users/ID: a user; /items?page=P: 503, then 429, then the page (so section 7's rule retries)."""

    calls: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        if parts.path.startswith("/users/"):
            user = int(parts.path.rsplit("/", 1)[1])
            self._reply(200, {"id": user, "name": USERS[user]})
            return
        page = int(query.get("page", 0))
        with self.lock:
            calls = self.calls[f"page {page}"] = self.calls.get(f"page {page}", 0) + 1
        if calls == 1:
            self._reply(503, {"error": "warming up"})
        elif calls == 2:
            self._reply(429, {"error": "slow down"}, {"Retry-After": "0"})
        else:
            self._reply(200, {"items": ITEMS, "page": page, "has_more": True})

    def _reply(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        reply_json(self, code, body, headers)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serving(_Api) as url:
        yield url


@pytest.fixture(scope="module")
def gpu_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Noetl]:
    """A stack whose pools file has a `gpu` pool, with a worker of that pool started beside it."""
    home = tmp_path_factory.mktemp("noetl-gpu")
    (home / "pools.yaml").write_text(POOLS, encoding="utf-8")
    with dev_stack(home, tmp_path_factory.mktemp("playbooks-gpu"), 4) as cli:
        state = json.loads((home / "dev.json").read_text())
        env = {**cli.env, "NOETL_NATS_URL": state["nats_url"], "NOETL_PG_DSN": state["pg_dsn"]}
        with open(home / "worker-gpu-test.log", "ab") as log:
            worker = subprocess.Popen([sys.executable, "-m", "noetl.cli", "worker", "start", "--pool", "gpu",
                                       "--concurrency", "2"], env=env, cwd=REPO, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            yield cli
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
            if worker.returncode not in (0, -15):
                print((home / "worker-gpu-test.log").read_text(errors="replace")[-3000:])


def run(cli: Noetl, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    code, doc = cli.run_json(yaml.safe_dump(body, sort_keys=False), run_timeout=90)
    assert (code, doc["status"]) == (0, "completed"), json.dumps(doc, default=str)[:4000]
    return doc, cli.events(doc["execution_id"])


def skeleton(name: str, workflow: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"apiVersion": "noetl.io/v2", "kind": "Playbook", "metadata": {"name": name}, **top,
            "workflow": workflow}


def test_the_document_skeleton_of_section_1_runs_from_its_entry_step_to_its_final_step(
        gpu_stack: Noetl) -> None:
    body = fill(spec_block("## 1. Document"), {
        ("metadata", "description"): "Scores a loan application by its debt ratio",
        ("workload",): {"applicant": {"income": 5000, "debt": 1500}},
        ("keychain",): [{"name": "desk", "kind": "static", "scope": "local",
                         "map": {"reviewer": "risk-desk"}}],
        ("workbook",): [{"name": "debt_ratio", "tool": {
            "kind": "python", "code": "result = {'ratio': applicant['debt'] / applicant['income']}"}}],
        ("workflow",): [
            {"step": "start", "next": [{"step": "decide"}],
             "tool": {"kind": "workbook", "name": "debt_ratio",
                      "input": {"applicant": "{{ workload.applicant }}"}}},
            {"step": "decide", "tool": {
                "kind": "python",
                "input": {"ratio": "{{ start.ratio }}", "reviewer": "{{ keychain.desk.reviewer }}"},
                "code": "result = {'approved': ratio < 0.5, 'reviewed': reviewer is not None}"}},
            {"step": "cleanup",
             "tool": {"kind": "noop", "result": "closed after approved={{ decide.approved }}"}},
        ],
    })
    doc, events = run(gpu_stack, body)
    assert doc["steps"]["start"]["result"] == {"ratio": 0.3}
    assert doc["steps"]["decide"]["result"] == {"approved": True, "reviewed": True}
    assert doc["steps"]["cleanup"]["result"] == "closed after approved=True"
    ended = [e["step"] for e in events if e["type"] == "step.succeeded"]
    assert ended == ["start", "decide", "cleanup"]  # the final step runs once, after everything else
    listed = gpu_stack("catalog", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "risk/score_application" in listed.stdout  # metadata.path is the catalog path


def test_the_step_skeleton_of_section_2_loops_over_http_on_the_gpu_pool_then_sets_and_routes(
        gpu_stack: Noetl, api: str) -> None:
    [step] = spec_block("## 2. Step")
    step = fill(step, {
        ("desc",): "Fetches each user of the workload from the directory API",
        ("input",): {"user": "{{ user_id }}"},
        ("loop",): {"in": "{{ workload.user_ids }}", "iterator": "user_id"},
        ("tool",): {"method": "GET", "url": "{{ workload.api }}/users/{{ input.user }}"},
        ("set", "ctx.x"): "{{ fetch_users | length }}",
        ("next",): {"arcs": [{"step": "report"}]},
    })
    body = skeleton("spec_step", [step, {"step": "report", "tool": {
        "kind": "python", "input": {"count": "{{ ctx.x }}", "users": "{{ fetch_users }}"},
        "code": "result = {'count': count, 'names': [u['data']['name'] for u in users]}"}}],
        workload={"api": api, "user_ids": [1, 2, 3]})
    doc, events = run(gpu_stack, body)
    assert doc["steps"]["report"]["result"] == {"count": 3, "names": ["ana", "bo", "cy"]}
    items = [e for e in events if e["type"] == "loop.item.succeeded" and e["step"] == "fetch_users"]
    assert len(items) == 3 and {e["result"]["meta"]["pool"] for e in items} == {"gpu"}


def test_the_pipeline_example_of_section_7_retries_429_and_503_then_stores_the_page(
        gpu_stack: Noetl, api: str) -> None:
    state = json.loads((gpu_stack.home / "dev.json").read_text())
    stored = gpu_stack("credential", "set", "pg_spec7", "--type", "postgres",
                       "--data", json.dumps({"dsn": state["pg_dsn"]}))
    assert stored.returncode == 0, stored.stderr
    with psycopg.connect(state["pg_dsn"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS spec7_items (id int PRIMARY KEY, name text)")
    tool = fill(spec_block("## 7. Task pipelines")["tool"], {
        (1, "command"): "INSERT INTO spec7_items (id, name) SELECT (j->>'id')::int, j->>'name' FROM "
                        "jsonb_array_elements('{{ page.data.items | tojson }}'::jsonb) j RETURNING id",
    })
    tool[1]["auth"] = "pg_spec7"  # the connection the block elides with its command
    doc, events = run(gpu_stack, skeleton("spec_pipeline", [{"step": "pages", "tool": tool}],
                                          workload={"base": api}))
    assert doc["steps"]["pages"]["result"]["row_count"] == 5
    with psycopg.connect(state["pg_dsn"]) as conn:
        assert conn.execute("SELECT id, name FROM spec7_items ORDER BY id").fetchall() == \
            [(i["id"], i["name"]) for i in ITEMS]
    assert _Api.calls["page 1"] == 3  # 503, 429, then the page: the first rule retried twice
    failed = [e["result"]["error"] for e in events
              if e["type"] == "task.attempt.failed" and e["payload"]["task"] == "page"]
    assert [(f["kind"], f["http_status"]) for f in failed] == [("server_error", 503), ("rate_limit", 429)]
    assert [e["payload"]["task"] for e in events if e["type"] == "step.retrying"] == ["page", "page"]


def test_the_resources_of_section_11_send_the_step_to_the_gpu_pool_with_the_preferred_hardware(
        gpu_stack: Noetl) -> None:
    spec = spec_block("## 11. Resources")["spec"]
    body = skeleton("spec_resources", [{"step": "embed", "spec": spec, "tool": {
        "kind": "python", "code": "result = 'embedded'"}}])
    doc, events = run(gpu_stack, body)
    assert doc["steps"]["embed"]["result"] == "embedded"
    [ended] = [e for e in events if e["type"] == "step.succeeded" and e["step"] == "embed"]
    assert ended["result"]["meta"]["pool"] == "gpu"


def test_a_spec_block_that_gains_a_placeholder_is_noticed() -> None:
    block = {"tool": {"kind": "http", PLACEHOLDER: None}, "set": {"ctx.x": "{{ ... }}"}}
    assert placeholders(block) == [("tool",), ("set", "ctx.x")]
    with pytest.raises(AssertionError):
        fill(block, {("tool",): {"url": "x"}})

