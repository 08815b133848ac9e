"""The console's triggers pages: the list and a trigger's detail with its firings (linked to their executions)
and events; pause and resume forms only for operators and above, and a viewer's post refused anyway."""

from __future__ import annotations

import hashlib
import hmac
import json
from html import unescape
from typing import Any

import pytest

from tests.integration.api.helpers import Api, playbook, register, unique
from tests.integration.console.helpers import csrf_of, signed_in

pytestmark = pytest.mark.anyio

HELLO = "workflow:\n  - {step: a, tool: {kind: noop, result: ok}}\n"


async def new_trigger(api: Api, **spec: Any) -> tuple[str, dict[str, Any]]:
    """A fresh playbook and a trigger of it made through the API: (path, the trigger as created)."""
    name = unique("console_trig")
    async with api.client("admin") as admin:
        await register(admin, playbook(name, HELLO))
        response = await admin.post("/api/triggers", json={"path": name, **spec})
        assert response.status_code == 201, response.text
        return name, response.json()


async def paused_in_api(api: Api, trigger_id: str) -> bool:
    async with api.client("viewer") as viewer:
        response = await viewer.get(f"/api/triggers/{trigger_id}")
        assert response.status_code == 200, response.text
        return bool(response.json()["paused"])


async def test_a_viewer_sees_the_list_and_the_detail_without_pause_buttons(api: Api) -> None:
    path, created = await new_trigger(api, cron="30 2 * * *", tz="Europe/Paris", name="nightly",
                                      concurrency="skip")
    trigger_id = created["id"]
    async with signed_in(api, "viewer") as client:
        response = await client.get("/ui/triggers", params={"path": path})
        assert response.status_code == 200, response.text
        html = unescape(response.text)
        assert '<a href="/ui/triggers" aria-current="page">Triggers</a>' in html  # in the navigation
        assert f'data-trigger-id="{trigger_id}"' in html and f'href="/ui/triggers/{trigger_id}"' in html
        assert path in html and "<td>cron</td>" in html and "cron 30 2 * * * (Europe/Paris)" in html
        assert "active" in html and html.count("<time datetime=") == 3  # its next three times
        assert "/pause" not in html and "/resume" not in html and "need the\noperator role" in html

        detail = await client.get(f"/ui/triggers/{trigger_id}")
        assert detail.status_code == 200, detail.text
        html = unescape(detail.text)
        assert "Trigger nightly" in html and f"<code>{trigger_id}</code>" in html
        assert "cron 30 2 * * * (Europe/Paris)" in html and "<dt>concurrency</dt><dd>skip</dd>" in html
        assert "It has not fired yet." in html and 'id="trigger-events"' in html
        assert "/pause" not in html and "/resume" not in html

        missing = await client.get("/ui/triggers/no-such-trigger")
        assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


async def test_a_viewer_posting_a_pause_is_refused_and_the_trigger_keeps_firing(api: Api) -> None:
    _, created = await new_trigger(api, every="1h")
    trigger_id = created["id"]
    async with signed_in(api, "viewer") as client:
        page = (await client.get(f"/ui/triggers/{trigger_id}")).text
        response = await client.post(f"/ui/triggers/{trigger_id}/pause", data={"csrf": csrf_of(page)})
    assert response.status_code == 403 and "text/html" in response.headers["content-type"]
    assert "has role 'viewer'; this needs 'operator'" in unescape(response.text)
    assert await paused_in_api(api, trigger_id) is False


async def test_an_operator_pauses_and_resumes_a_trigger_from_its_page_and_from_the_list(api: Api) -> None:
    path, created = await new_trigger(api, every="1h")
    trigger_id = created["id"]
    async with signed_in(api, "operator") as client:
        page = (await client.get(f"/ui/triggers/{trigger_id}")).text
        assert f'action="/ui/triggers/{trigger_id}/pause"' in page and "/resume" not in page
        response = await client.post(f"/ui/triggers/{trigger_id}/pause", data={"csrf": csrf_of(page)})
        assert response.status_code == 303 and response.headers["location"] == \
            f"/ui/triggers/{trigger_id}?done=pause"
        assert await paused_in_api(api, trigger_id) is True
        done = await client.get(response.headers["location"])
        assert "Trigger paused." in done.text and f'action="/ui/triggers/{trigger_id}/resume"' in done.text
        assert "<dt>Next</dt><dd>-</dd>" in done.text  # a paused trigger fires at no time

        listed = (await client.get("/ui/triggers", params={"path": path})).text
        assert f'action="/ui/triggers/{trigger_id}/resume"' in listed
        response = await client.post(f"/ui/triggers/{trigger_id}/resume",
                                     data={"csrf": csrf_of(listed), "back": "list"})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/triggers?done=resume")
        assert await paused_in_api(api, trigger_id) is False
        done = await client.get(response.headers["location"])
        assert f"Trigger {trigger_id} resumed." in done.text


async def test_a_pause_without_the_csrf_token_changes_nothing(api: Api) -> None:
    _, created = await new_trigger(api, every="1h")
    async with signed_in(api, "operator") as client:
        response = await client.post(f"/ui/triggers/{created['id']}/pause", data={"back": "list"})
    assert response.status_code == 403
    assert await paused_in_api(api, created["id"]) is False


async def test_a_webhook_delivery_shows_as_a_firing_linked_to_its_execution_and_as_events(api: Api) -> None:
    _, created = await new_trigger(api, webhook=True)
    trigger_id, secret = created["id"], created["secret"]
    body = json.dumps({"order": 7}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    async with api.client(None) as anyone:
        response = await anyone.post(f"/api/hooks/{trigger_id}", content=body,
                                     headers={"Content-Type": "application/json",
                                              "X-NoETL-Signature": signature,
                                              "X-NoETL-Delivery": unique("delivery")})
    assert response.status_code == 202, response.text
    delivered = response.json()
    assert delivered["status"] == "started" and delivered["execution_id"]
    async with signed_in(api, "viewer") as client:
        html = unescape((await client.get(f"/ui/triggers/{trigger_id}")).text)
    assert f'data-firing-id="{delivered["firing_id"]}"' in html
    assert f'<a href="/ui/executions/{delivered["execution_id"]}">' in html
    assert 'class="status status-started">started<' in html
    assert f"each signed delivery to /api/hooks/{trigger_id}" in html and secret not in html
    assert "No events yet." not in html
