"""The console in a real browser (Playwright driving the system's chromium): sign in with the form, find
a failed execution and read its diagnosis, approve a proposal as an approver, and see no approve button as
an operator; see a playbook's plan chart, validate pasted YAML, and watch the pools live. Screenshots go
to the test's directory; with NOETL_DOCS_SCREENSHOTS=1 two of them are copied to docs/images/ for the
README."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import REPO
from tests.harness.playbooks import held_until
from tests.integration.api.helpers import Api, execute, playbook, register, unique
from tests.integration.console.helpers import failed_execution, proposal, proposal_state

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason=f"no chromium binary at {CHROMIUM}: install it (`apt-get install -y chromium`; "
                              ".ci/run does) to run the console's browser tests"),
]
TIMEOUT_MS = 30_000
DOCS_IMAGES = REPO / "docs" / "images"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium's sandbox refuses to run as root
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """The test's screenshots directory (kept with pytest's temporary directories)."""
    directory = tmp_path / "screenshots"
    directory.mkdir()
    return directory


async def _screenshot(page: Page, shots: Path, name: str, *, docs: bool = False) -> Path:
    path = shots / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("NOETL_DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / path.name)
    return path


async def _signed_in_page(browser: Browser, api: Api, role: str) -> Page:
    """A fresh browser context that signed in with the form, as a person would."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{api.url}/ui/sign-in")
    await page.get_by_label("API token").fill(api.tokens[role])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{api.url}/ui/executions")
    return page


async def test_sign_in_with_the_form_find_a_failed_execution_and_read_its_diagnosis(
        browser: Browser, api: Api, shots: Path) -> None:
    path, execution_id = await failed_execution(api)
    async with api.client("viewer") as reader:
        diagnosis = (await reader.get(f"/api/executions/{execution_id}/diagnosis")).json()
    page = await _signed_in_page(browser, api, "approver")
    try:
        assert "(approver)" in await page.locator(".who").inner_text()
        await page.get_by_label("Status").select_option("failed")
        await page.get_by_label("Playbook path").fill(path)
        await page.get_by_role("button", name="Filter").click()
        await page.wait_for_url("**/ui/executions?status=failed*")
        await _screenshot(page, shots, "console-executions")
        await page.get_by_role("link", name=execution_id).click()
        await page.wait_for_url(f"{api.url}/ui/executions/{execution_id}")
        assert await page.locator("#execution-status").inner_text() == "failed"
        assert await page.locator(".diagnosis-summary").inner_text() == diagnosis["summary"]
        assert await page.locator("#graph svg .node-failed").count() == 1
        await _screenshot(page, shots, "console-execution", docs=True)
    finally:
        await page.context.close()


async def test_an_approver_approves_a_proposal_in_the_browser(browser: Browser, api: Api,
                                                             shots: Path) -> None:
    _, proposal_id = await proposal(api, "operator")
    page = await _signed_in_page(browser, api, "approver")
    try:
        await page.get_by_role("link", name="Proposals").click()
        article = page.locator(f"#p-{proposal_id}")
        assert "+   \"timeout_s\": 7" in await article.locator("pre.diff").inner_text()
        await _screenshot(page, shots, "console-proposals", docs=True)
        await article.get_by_role("button", name="Approve").click()
        await page.wait_for_url("**/ui/proposals?done=approve*")
        assert await page.get_by_role("status").first.inner_text() == f"Proposal {proposal_id} approved."
        assert await page.locator(f"#p-{proposal_id} .state").inner_text() == "applied"
        await _screenshot(page, shots, "console-approved")
    finally:
        await page.context.close()
    assert await proposal_state(api, proposal_id) == "applied"


async def test_an_operator_sees_the_proposal_but_no_approve_button(browser: Browser, api: Api,
                                                                   shots: Path) -> None:
    _, proposal_id = await proposal(api, "admin")
    page = await _signed_in_page(browser, api, "operator")
    try:
        await page.goto(f"{api.url}/ui/proposals")
        article = page.locator(f"#p-{proposal_id}")
        assert await article.get_by_role("heading").first.is_visible()
        assert await article.get_by_role("button", name="Approve").count() == 0
        assert await page.get_by_role("button", name="Approve").count() == 0
        await _screenshot(page, shots, "console-proposals-operator")
    finally:
        await page.context.close()


async def test_the_first_tab_stop_is_the_skip_link_to_the_content(browser: Browser, api: Api) -> None:
    page = await _signed_in_page(browser, api, "viewer")
    try:
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"
    finally:
        await page.context.close()


async def test_the_executions_list_shows_a_status_change_without_a_reload(browser: Browser, api: Api) -> None:
    name = unique("console_live_page")
    release = api.stack.config.home / f"{name}.release"
    async with api.client("admin") as admin:
        await register(admin, playbook(name, held_until(release)))
        execution_id = await execute(admin, name)
    page = await _signed_in_page(browser, api, "viewer")
    try:
        await page.goto(f"{api.url}/ui/executions?path={name}")
        status = page.locator(f'tr[data-execution-id="{execution_id}"] .status')
        connected = re.compile(rf"^(Live: statuses update as they change|Execution {execution_id} is "
                               r"(pending|running))\.$")
        await expect(page.get_by_role("status")).to_have_text(connected)  # the stream is open
        assert await status.inner_text() in ("pending", "running")
        release.write_text("go")
        await expect(status).to_have_text("completed", timeout=TIMEOUT_MS)
        await expect(page.get_by_role("status")).to_have_text(f"Execution {execution_id} is completed.")
    finally:
        release.write_text("go")
        await page.context.close()


async def test_ask_the_chat_on_a_failed_execution_and_follow_a_cited_event_to_its_row(
        browser: Browser, api: Api, shots: Path) -> None:
    _, execution_id = await failed_execution(api)
    page = await _signed_in_page(browser, api, "viewer")
    try:
        await page.goto(f"{api.url}/ui/executions/{execution_id}")
        await page.get_by_label("Ask", exact=True).fill("why did it fail?")
        await page.get_by_role("button", name="Ask", exact=True).click()
        await page.wait_for_url("**/ui/chat?conversation=*")
        answer = page.locator("#latest .answer-text")
        assert "root cause is a" in await answer.inner_text()
        await _screenshot(page, shots, "console-chat", docs=True)
        cite = answer.locator("a.cite").first
        target = (await cite.get_attribute("href") or "").split("#")[1]
        await cite.click()
        await page.wait_for_url(f"{api.url}/ui/executions/{execution_id}#{target}")
        assert await page.locator(f"#{target}").count() == 1
    finally:
        await page.context.close()


SQUARES = """\
workflow:
  - step: square
    loop: {in: [1, 2, 3], iterator: x, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, code: "result = x * x"}
"""
BROKEN = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: browser_broken}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: nowhere}]}
"""


async def test_the_catalog_shows_a_playbooks_plan_as_a_gantt_chart_and_validate_locates_an_error(
        browser: Browser, api: Api, shots: Path) -> None:
    name = unique("console_browser_plan")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, SQUARES))
    page = await _signed_in_page(browser, api, "viewer")
    try:
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Catalog").click()
        await page.wait_for_url(f"{api.url}/ui/catalog")
        await page.get_by_role("link", name=name, exact=True).click()
        await page.wait_for_url(f"**/ui/catalog/playbook?path={name}")
        chart = page.locator("#plan svg.gantt")
        await expect(chart).to_be_visible()
        assert await chart.locator("g.task").count() == 3  # a bar per loop item
        titles = await chart.locator("g.task > title").all_text_contents()
        assert sorted(t.split(" on ")[0] for t in titles) == ["square [0]", "square [1]", "square [2]"]
        lanes = await chart.locator("text.lane-label").all_text_contents()
        assert lanes and all(lane.startswith("default") for lane in lanes)  # the default pool's slots
        await _screenshot(page, shots, "console-playbook-plan")
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Catalog").click()
        await page.get_by_role("link", name="Validate a playbook").click()
        await page.get_by_label("Playbook YAML").fill(BROKEN)
        await page.get_by_role("button", name="Validate").click()
        await page.wait_for_url(f"{api.url}/ui/catalog/validate")
        assert (await page.locator("#verdict").inner_text()).startswith("Not valid: 1 error")
        problem = await page.locator("ul.diagnostics li").first.inner_text()
        assert problem.startswith("pasted.yaml:7:") and "workflow[0].next.arcs[0].step" in problem
        assert "nowhere" in problem
        await _screenshot(page, shots, "console-validate")
    finally:
        await page.context.close()


async def test_the_pools_page_shows_the_live_worker_and_keeps_it_live(browser: Browser, api: Api,
                                                                      shots: Path) -> None:
    page = await _signed_in_page(browser, api, "viewer")
    try:
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Pools").click()
        await page.wait_for_url(f"{api.url}/ui/pools")
        pool = page.get_by_role("region", name="Pool default")
        worker = pool.locator("tr[data-worker]")
        await expect(worker).to_have_count(1, timeout=TIMEOUT_MS)  # live: appears without a reload
        await expect(page.locator("#live-status")).not_to_have_text("")  # the stream is open
        assert await worker.locator(".w-concurrency").inner_text() == "2"
        first_read = await page.locator("#pools-at").inner_text()
        await expect(page.locator("#pools-at")).not_to_have_text(first_read, timeout=TIMEOUT_MS)  # read again
        await expect(worker.locator(".w-heard")).to_have_text(re.compile(r"^\d+\.\d s ago$"))
        await _screenshot(page, shots, "console-pools")
    finally:
        await page.context.close()
