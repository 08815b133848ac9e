"""The console's insights page: the failure clusters, steps and bottlenecks of a window, for one playbook;
a window it cannot read is said on the page."""

from __future__ import annotations

from html import unescape

import pytest

from tests.integration.api.helpers import Api
from tests.integration.console.helpers import failed_execution, signed_in

pytestmark = pytest.mark.anyio


async def test_the_insights_page_shows_a_playbooks_failure_cluster_and_its_steps(api: Api) -> None:
    path, execution_id = await failed_execution(api)
    async with signed_in(api, "viewer") as client:
        response = await client.get("/ui/insights", params={"path": path, "since": "1h"})
        assert response.status_code == 200, response.text
        html = unescape(response.text)
        assert "1 execution(s) since" in html and "1 failed" in html
        assert "python_exception: division by zero" in html and "there from the start of the window" in html
        assert '<th scope="row">divide</th>' in html and '<th scope="row">start</th>' in html
        assert 'href="/ui/insights"' in html and 'aria-current="page"' in html  # in the navigation
        refused = await client.get("/ui/insights", params={"since": "last week"})
        assert refused.status_code == 200 and "neither a span nor a time" in unescape(refused.text)


async def test_the_insights_page_needs_a_session(api: Api) -> None:
    async with api.client("viewer") as bearer:  # a token without a console session
        response = await bearer.get("/ui/insights", follow_redirects=False)
    assert response.status_code in (303, 401)
