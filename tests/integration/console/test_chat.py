"""The chat in the console: the question box on every page, the conversation page, answers whose cited
events link to their rows on the execution's page, CSRF and the asker's own role."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.api.helpers import Api
from tests.integration.console.helpers import csrf_of, failed_execution, signed_in

pytestmark = pytest.mark.anyio


async def test_every_page_has_the_question_box_and_the_execution_page_s_box_is_about_that_run(
        api: Api) -> None:
    _, execution_id = await failed_execution(api)
    async with signed_in(api, "viewer") as client:
        for path in ("/ui/executions", "/ui/proposals", "/ui/chat"):
            html = (await client.get(path)).text
            assert 'action="/ui/chat"' in html and 'id="ask-message"' in html, path
        page = (await client.get(f"/ui/executions/{execution_id}")).text
        assert f'name="about" value="{execution_id}"' in page
        assert 'id="event-' in page


async def test_asking_on_an_execution_s_page_answers_about_it_with_links_to_its_events(api: Api) -> None:
    _, execution_id = await failed_execution(api)
    async with signed_in(api, "viewer") as client:
        page = (await client.get(f"/ui/executions/{execution_id}")).text
        asked = await client.post("/ui/chat", data={"csrf": csrf_of(page), "message": "why did it fail?",
                                                    "about": execution_id})
        assert asked.status_code == 303
        location = asked.headers["location"]
        conversation = parse_qs(urlsplit(location).query)["conversation"][0]
        answer = (await client.get(location.split("#")[0])).text
        assert "failed: the root cause is a" in answer
        links = re.findall(rf'href="/ui/executions/{execution_id}#event-([0-9a-f]+)"', answer)
        assert links
        events = (await client.get(f"/ui/executions/{execution_id}")).text
        assert all(f'id="event-{event}"' in events for event in links)
        follow = await client.post("/ui/chat", data={"csrf": csrf_of(answer), "message": "is it transient?",
                                                     "conversation": conversation})
        page = (await client.get(follow.headers["location"].split("#")[0])).text
        assert page.count('class="question"') == 2 and "permanent" in page


async def test_a_question_without_the_csrf_token_is_refused_and_not_asked(api: Api) -> None:
    async with signed_in(api, "viewer") as client:
        refused = await client.post("/ui/chat", data={"message": "what failed most recently?"})
        assert refused.status_code == 403
        assert "ol class=\"chat\"" not in (await client.get("/ui/chat")).text


async def test_a_viewer_asking_the_console_to_propose_is_told_its_role_may_not(api: Api) -> None:
    _, execution_id = await failed_execution(api)
    async with signed_in(api, "viewer") as client:
        page = (await client.get("/ui/chat")).text
        asked = await client.post("/ui/chat", data={"csrf": csrf_of(page), "about": execution_id,
                                                    "message": "propose a change for it"})
        answer = (await client.get(asked.headers["location"].split("#")[0])).text
        assert "Your role (viewer) may not propose" in answer
