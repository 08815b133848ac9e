"""The console's catalog (playbooks and versions; one playbook's YAML, graph and plan as a per-pool Gantt
chart; validating pasted YAML, which registers nothing) and pools (live workers, kept live over SSE)."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape
from typing import Any

import pytest

from engine.net.validate import validate_text
from tests.harness.polling import poll
from tests.integration.api.helpers import Api, execute, playbook, register, unique, wait_ended
from tests.integration.console.helpers import csrf_of, signed_in

pytestmark = pytest.mark.anyio
STREAM_TIMEOUT_S = 30.0
PASTED = "pasted.yaml"
FANOUT = """\
workflow:
  - step: square
    loop: {in: [1, 2, 3], iterator: x, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, code: "result = x * x"}
    next: {arcs: [{step: total, when: "{{ event.name == 'loop.done' }}"}]}
  - step: total
    tool: {kind: python, input: {xs: "{{ square }}"}, code: "result = sum(xs)"}
"""
LATE_ITEMS = """\
workflow:
  - step: list
    tool: {kind: python, code: "result = [1, 2]"}
    next: {arcs: [{step: each}]}
  - step: each
    loop: {in: "{{ list }}", iterator: x}
    tool: {kind: noop}
"""
NEEDS_GPU = """\
workflow:
  - step: train
    tool: {kind: python, code: "result = 1"}
    spec: {resources: {gpu: 1}}
"""
INVALID = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: pasted_invalid}
workflow:
  - step: start
    tool: {kind: noop}
    next:
      arcs: [{step: nowhere}]
  - step: fetch
    tool: {kind: teleport}
"""
UNREACHABLE = """\
workflow:
  - step: start
    tool: {kind: noop}
  - step: orphan
    tool: {kind: noop}
"""


def _gantt_bars(html: str) -> dict[str, dict[str, Any]]:
    """The plan chart's bars: label -> pool, start and end ms (from each bar's title)."""
    svg = html[html.index('class="gantt"'):]
    svg = svg[:svg.index("</svg>")]
    found = re.findall(r'<g class="task" data-pool="([^"]+)">\s*<title>(.+?) on \1: (\d+)–(\d+) ms', svg)
    return {label: {"pool": pool, "start": int(start), "end": int(end)} for pool, label, start, end in found}


def _makespan_ms(bars: dict[str, dict[str, Any]]) -> int:
    return max(b["end"] for b in bars.values())


async def test_the_catalog_lists_every_playbook_with_each_of_its_versions(api: Api) -> None:
    name = unique("console_cat")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, "workflow:\n  - {step: a, tool: {kind: noop}}\n"))
        await register(admin, playbook(name, "workflow:\n  - {step: b, tool: {kind: noop}}\n"))
    async with signed_in(api, "viewer") as client:
        response = await client.get("/ui/catalog")
    assert response.status_code == 200
    html = unescape(response.text)
    row = html[html.index(f'<tr data-path="{name}">'):]
    row = row[:row.index("</tr>")]
    assert f'href="/ui/catalog/playbook?path={name}"' in row
    for version in (1, 2):
        assert f"/ui/catalog/playbook?path={name}&version={version}" in row
    assert '<a href="/ui/catalog" aria-current="page">Catalog</a>' in response.text  # in the nav


async def test_a_playbooks_page_shows_its_yaml_graph_and_plan_as_a_gantt_chart_per_pool(api: Api) -> None:
    name = unique("console_plan")
    text = playbook(name, FANOUT)
    async with api.client("admin") as admin:
        await register(admin, text)
    async with signed_in(api, "viewer") as client:
        response = await client.get("/ui/catalog/playbook", params={"path": name})
        assert response.status_code == 200, response.text
        before = unescape(response.text)
        async with api.client("admin") as admin:  # one run: the event log now has durations
            execution_id = await execute(admin, name)
            assert (await wait_ended(admin, execution_id))["status"] == "completed"
        after = unescape((await client.get("/ui/catalog/playbook", params={"path": name, "version": 1})).text)
    assert text.strip() in before  # the YAML as registered
    assert re.search(r'class="node node-python-loop">\s*<title>square: python loop</title>', before)
    assert "<title>square → total (when …)</title>" in before
    bars = _gantt_bars(before)
    assert set(bars) == {"square [0]", "square [1]", "square [2]", "total"}
    assert {b["pool"] for b in bars.values()} == {"default"}  # the default pool set: one pool
    assert bars["square [2]"]["start"] >= bars["square [0]"]["end"]  # max_in_flight: 2
    assert bars["total"]["start"] >= max(bars[f"square [{i}]"]["end"] for i in range(3))
    assert f'<dd id="plan-makespan">{_makespan_ms(bars) / 1000:g} s</dd>' in before
    assert "per-kind defaults (the event log has no successful run" in before
    assert "medians of past successful runs from the event log (2 steps)" in after
    assert _makespan_ms(_gantt_bars(after)) < _makespan_ms(bars)  # measured runs are faster than 1 s defaults
    assert re.search(r'id="plan-status">(OPTIMAL|FEASIBLE|GREEDY)<', before)


async def test_a_loop_whose_items_come_from_a_step_is_planned_as_one_item_and_says_so(api: Api) -> None:
    name = unique("console_late")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, LATE_ITEMS))
    async with signed_in(api, "viewer") as client:
        html = unescape((await client.get("/ui/catalog/playbook", params={"path": name})).text)
    assert "loop 'each': its items are known only at run time; planned as one item" in html
    assert set(_gantt_bars(html)) == {"list", "each [0]"}


async def test_a_step_no_pool_can_run_gets_no_plan_and_the_planners_reason(api: Api) -> None:
    name = unique("console_gpu")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, NEEDS_GPU))
    async with signed_in(api, "viewer") as client:
        html = unescape((await client.get("/ui/catalog/playbook", params={"path": name})).text)
    problem = html[html.index('id="plan-problem">'):]
    assert "1 step can never run on the configured pools (built-in default)" in problem
    assert "gpu" in problem[:problem.index("</pre>")]
    assert 'class="gantt"' not in html


async def test_an_unknown_playbook_is_a_404_page(api: Api) -> None:
    async with signed_in(api, "viewer") as client:
        response = await client.get("/ui/catalog/playbook", params={"path": unique("no_such_playbook")})
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]
    assert "is not in the catalog" in unescape(response.text)


async def _catalog_paths(api: Api) -> set[str]:
    async with api.client("viewer") as reader:
        response = await reader.get("/api/catalog")
    assert response.status_code == 200, response.text
    return {item["path"] for item in response.json()["items"]}


async def test_validating_pasted_yaml_lists_every_problem_located_and_registers_nothing(api: Api) -> None:
    expected = [d.format() for d in validate_text(INVALID, PASTED).diagnostics]  # as `noetl validate` prints
    async with signed_in(api, "viewer") as client:
        form = (await client.get("/ui/catalog/validate")).text
        response = await client.post("/ui/catalog/validate",
                                     data={"csrf": csrf_of(form), "playbook": INVALID})
    assert response.status_code == 200, response.text
    html = unescape(response.text)
    shown = re.findall(r'<li class="diagnostic-(?:error|warning)"><code>(.+?)</code></li>', html)
    assert shown == expected and len(expected) >= 2
    assert any(line.startswith(f"{PASTED}:8:") and "nowhere" in line for line in shown)  # the arc's line
    assert any(line.startswith(f"{PASTED}:10:") and "teleport" in line for line in shown)  # the tool's line
    assert "Not valid: " in html
    assert INVALID in html  # the text stays in the form, to fix it
    assert "pasted_invalid" not in await _catalog_paths(api)


async def test_a_valid_pasted_playbook_is_valid_with_its_warnings_and_is_not_registered(api: Api) -> None:
    name = unique("console_valid")
    text = playbook(name, UNREACHABLE)
    [warning] = validate_text(text, PASTED).warnings
    async with signed_in(api, "operator") as client:
        form = (await client.get("/ui/catalog/validate")).text
        html = unescape((await client.post("/ui/catalog/validate",
                                           data={"csrf": csrf_of(form), "playbook": text})).text)
    assert '<p class="notice" role="status" id="verdict">Valid, with 1 warning.</p>' in html
    assert f'<li class="diagnostic-warning"><code>{warning.format()}</code></li>' in html
    assert "step 'orphan' is unreachable" in warning.format()
    assert name not in await _catalog_paths(api)


async def test_a_validation_posted_without_the_csrf_token_is_refused(api: Api) -> None:
    name = unique("console_forged")
    async with signed_in(api, "viewer") as client:
        response = await client.post("/ui/catalog/validate", data={"playbook": playbook(name, UNREACHABLE)})
    assert response.status_code == 403
    assert "CSRF token is missing" in unescape(response.text)
    assert name not in await _catalog_paths(api)


async def _live_default_pool(client: Any) -> str:
    async def page_with_worker() -> str | None:
        html = (await client.get("/ui/pools")).text
        return html if 'data-worker="' in html else None

    found: str = await poll(page_with_worker, timeout_s=30, what="a live worker on the pools page")
    return found


async def test_the_pools_page_shows_each_pool_with_its_live_workers_and_queue(api: Api) -> None:
    async with signed_in(api, "viewer") as client:
        html = unescape(await _live_default_pool(client))
    async with api.client("viewer") as reader:
        pools = {p["name"]: p for p in (await reader.get("/api/pools")).json()["items"]}
    section = html[html.index('<section class="pool" data-pool="default"'):]
    section = section[:section.index("</section>")]
    [worker] = pools["default"]["workers"]
    assert f'<tr data-worker="{worker["worker"]}"><th scope="row">{worker["worker"]}</th>' in section
    assert f'<td class="w-concurrency">{worker["concurrency"]}</td>' in section
    assert re.search(r'<td class="w-heard">\d+\.\d s ago</td>', section)
    assert '<dd class="live-capacity">cpu 2</dd>' in section and '<dd class="queued">0</dd>' in section
    assert '<a href="/ui/pools" aria-current="page">Pools</a>' in html


async def test_the_live_pools_stream_sends_the_pools_again_every_few_seconds(api: Api) -> None:
    async with signed_in(api, "viewer") as client:
        await _live_default_pool(client)
        received: list[dict[str, Any]] = []

        async def follow() -> None:
            async with client.stream("GET", "/ui/pools/live") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                kind = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "pools":
                        received.append(json.loads(line[6:]))
                        if len(received) == 2:
                            return

        await asyncio.wait_for(follow(), STREAM_TIMEOUT_S)
    for sent in received:
        default = next(p for p in sent["pools"] if p["name"] == "default")
        assert default["workers"] and default["workers"][0]["concurrency"] == "2"
        assert re.fullmatch(r"\d\d:\d\d:\d\d", sent["at"])
