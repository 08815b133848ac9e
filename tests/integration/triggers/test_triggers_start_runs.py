"""Every trigger kind starts real executions on the embedded stack, once per firing (docs/triggers.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from agents.insights.service import InsightsService
from control_plane.services.insights import InsightsHistory
from tests.harness.polling import poll
from tests.integration.api.helpers import playbook, register, unique
from tests.integration.triggers.conftest import TriggerApi

pytestmark = pytest.mark.anyio

ECHO = """
workload: {n: 0}
workflow:
  - step: start
    tool:
      kind: python
      input: {w: "{{ workload }}"}
      code: |
        result = {"seen": w}
"""


async def _echo(client: httpx.AsyncClient, prefix: str) -> str:
    path = unique(prefix)
    await register(client, playbook(path, ECHO))
    return path


async def _create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/triggers", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _show(client: httpx.AsyncClient, trigger_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/triggers/{trigger_id}", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()


async def _status(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/executions/{execution_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _completed(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        summary = await _status(client, execution_id)
        return summary if summary["status"] in ("completed", "failed") else None

    summary = await poll(done, timeout_s=30, what=f"execution {execution_id} to end")
    assert summary["status"] == "completed", summary
    return summary


async def test_an_interval_trigger_starts_a_run_each_period_and_show_lists_the_firings(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = await _echo(client, "every")
        trigger = await _create(client, path=path, every="1s", payload={"at": "{{ firing.scheduled_at }}"})
        assert trigger["kind"] == "interval" and trigger["next_at"]

        async def two_started() -> list[dict[str, Any]] | None:
            started = [f for f in (await _show(client, trigger["id"]))["firings"] if f["status"] == "started"]
            return started if len(started) >= 2 else None

        started = await poll(two_started, timeout_s=30, what="two firings of an every-1s trigger")
        assert len({f["execution_id"] for f in started}) == len(started)
        summary = await _completed(client, started[-1]["execution_id"])
        assert summary["result"]["seen"]["at"] == started[-1]["scheduled_at"].replace("Z", "+00:00") \
            or summary["result"]["seen"]["at"].startswith(started[-1]["scheduled_at"][:19])
        await client.delete(f"/api/triggers/{trigger['id']}")


async def test_a_cron_trigger_starts_a_run_when_its_minute_comes(api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = await _echo(client, "cron")
        trigger = await _create(client, path=path, cron="* * * * *", tz="Europe/Berlin", paused=False)
        next_at = datetime.fromisoformat(trigger["next_at"][0])
        # the clock-free rules take `now`: a look at the next minute decides it as the runner would then
        stored = await api.service.tick_schedule(trigger["id"], next_at + timedelta(seconds=1))
        assert [f.scheduled_at for f in stored] == [next_at]
        firing = (await _show(client, trigger["id"]))["firings"][0]
        assert firing["status"] == "started"
        await _completed(client, firing["execution_id"])
        again = await api.service.tick_schedule(trigger["id"], next_at + timedelta(seconds=2))
        assert again == []  # decided once
        await client.delete(f"/api/triggers/{trigger['id']}")


async def test_completion_triggers_chain_executions_with_the_upstream_result_as_payload(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        first = await _echo(client, "chain_a")
        second = await _echo(client, "chain_b")
        third = await _echo(client, "chain_c")
        b = await _create(client, path=second, after={"path": first, "on": "completed"})
        c = await _create(client, path=third, after={"path": second}, concurrency="skip",
                          payload={"from_b": "{{ upstream.result.seen.upstream.execution_id }}"})
        response = await client.post("/api/execute", json={"path": first, "payload": {"n": 7}})
        assert response.status_code == 201, response.text
        head = str(response.json()["execution_id"])

        async def fired(trigger_id: str) -> dict[str, Any] | None:
            firings = (await _show(client, trigger_id))["firings"]
            return firings[0] if firings and firings[0]["status"] == "started" else None

        b_firing = await poll(lambda: fired(b["id"]), timeout_s=30, what="the trigger after the first run")
        b_summary = await _completed(client, b_firing["execution_id"])
        upstream = b_summary["result"]["seen"]["upstream"]
        assert upstream["execution_id"] == head and upstream["status"] == "completed"
        assert upstream["result"] == {"seen": {"n": 7}}
        c_firing = await poll(lambda: fired(c["id"]), timeout_s=30, what="the trigger after the second run")
        c_summary = await _completed(client, c_firing["execution_id"])
        assert c_summary["result"]["seen"]["from_b"] == int(head) or \
            str(c_summary["result"]["seen"]["from_b"]) == head
        assert len((await _show(client, b["id"]))["firings"]) == 1
        for trigger in (b, c):
            await client.delete(f"/api/triggers/{trigger['id']}")


async def _sleeper(client: httpx.AsyncClient, prefix: str, seconds: float) -> str:
    """A registered playbook whose one python step sleeps `seconds`; its path."""
    path = unique(prefix)
    await register(client, playbook(path, f"""
        workflow:
          - step: start
            tool:
              kind: python
              code: |
                import time
                time.sleep({seconds})
                result = 1
        """))
    return path


def _signed(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_a_webhook_with_a_bad_signature_is_refused_and_starts_nothing(api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = await _echo(client, "hook_bad")
        trigger = await _create(client, path=path, webhook=True)
        assert trigger["secret"] and trigger["webhook_path"] == f"/api/hooks/{trigger['id']}"
    body = json.dumps({"order": 1}).encode()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        for signature in (None, "sha256=" + "0" * 64, _signed("not-the-secret", body)):
            headers = {"Content-Type": "application/json"}
            if signature:
                headers["X-NoETL-Signature"] = signature
            response = await anonymous.post(trigger["webhook_path"], content=body, headers=headers)
            assert response.status_code == 401, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
    async with api.client("viewer") as client:
        assert (await _show(client, trigger["id"]))["firings"] == []
        listed = await client.get("/api/executions", params={"path": path})
        assert listed.json()["items"] == []


async def test_a_signed_webhook_starts_one_run_per_delivery_id(api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = await _echo(client, "hook_good")
        trigger = await _create(client, path=path, webhook=True)
    body = json.dumps({"order": 42}).encode()
    headers = {"Content-Type": "application/json", "X-NoETL-Signature": _signed(trigger["secret"], body),
               "X-NoETL-Delivery": "delivery-1"}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        first = await anonymous.post(trigger["webhook_path"], content=body, headers=headers)
        assert first.status_code == 202, first.text
        assert first.json()["status"] == "started" and not first.json()["duplicate"]
        again = await anonymous.post(trigger["webhook_path"], content=body, headers=headers)
        assert again.status_code == 202, again.text
        assert again.json()["duplicate"] and again.json()["execution_id"] == first.json()["execution_id"]
    async with api.client("viewer") as client:
        summary = await _completed(client, first.json()["execution_id"])
        assert summary["result"]["seen"]["request"]["body"] == {"order": 42}
        assert len((await _show(client, trigger["id"]))["firings"]) == 1


async def test_a_subject_trigger_starts_one_run_per_message_even_when_it_is_published_twice(
        api: TriggerApi) -> None:
    import nats

    async with api.client("operator") as client:
        path = await _echo(client, "subject")
        subject = f"orders_{unique('s')}.created"
        trigger = await _create(client, path=path, subject=subject)
    connection = await nats.connect(api.stack.nats_url)
    try:
        for _ in range(2):  # the publisher retries with the same message id
            await connection.publish(subject, b'{"order": 5}', headers={"Nats-Msg-Id": "order-5"})
        await connection.publish(subject, b'{"order": 6}')
        await connection.flush()
    finally:
        await connection.close()
    async with api.client("viewer") as client:
        async def two() -> list[dict[str, Any]] | None:
            firings = [f for f in (await _show(client, trigger["id"]))["firings"] if f["status"] == "started"]
            return firings if len(firings) >= 2 else None

        firings = await poll(two, timeout_s=30, what="two subject firings")
        orders = sorted([(await _completed(client, f["execution_id"]))["result"]["seen"]["message"]["data"]
                         ["order"] for f in firings])
        assert orders == [5, 6]
        assert len((await _show(client, trigger["id"]))["firings"]) == 2


async def test_a_skip_concurrency_trigger_records_why_it_did_not_start_while_the_run_runs(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = await _sleeper(client, "slow", 2.5)
        trigger = await _create(client, path=path, every="1s", concurrency="skip")

        async def skipped() -> dict[str, Any] | None:
            firings = (await _show(client, trigger["id"]))["firings"]
            return next((f for f in firings if f["status"] == "skipped"), None)

        firing = await poll(skipped, timeout_s=30, what="a skipped firing")
        assert "still running (concurrency: skip)" in firing["reason"]
        await client.post(f"/api/triggers/{trigger['id']}/pause")
        events = (await client.get(f"/api/triggers/{trigger['id']}/events")).json()["items"]
        types = {e["type"] for e in events}
        assert {"trigger.fired", "trigger.started", "trigger.skipped", "trigger.paused"} <= types
        assert any(e["type"] == "trigger.skipped" and "still running" in e["reason"] for e in events)
        assert api.stack.store is not None  # the insights count the skips, with their reason
        report = await InsightsService(InsightsHistory(api.stack.store)).report(path, "1h")
        [figures] = report["triggers"]
        assert figures["trigger_id"] == trigger["id"] and figures["started"] >= 1 and figures["skipped"] >= 1
        assert "still running (concurrency: skip)" in figures["reasons"][0]["reason"]
        await client.delete(f"/api/triggers/{trigger['id']}")


async def test_a_queue_concurrency_trigger_starts_the_waiting_firing_when_the_run_ends(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = await _sleeper(client, "queued", 1.5)
        trigger = await _create(client, path=path, every="1s", concurrency="queue")

        async def dequeued() -> list[dict[str, Any]] | None:
            events = (await client.get(f"/api/triggers/{trigger['id']}/events",
                                       params={"limit": 1000})).json()["items"]
            return events if any(e["type"] == "trigger.dequeued" for e in events) else None

        await poll(dequeued, timeout_s=30, what="a queued firing started after the previous run")
        await client.post(f"/api/triggers/{trigger['id']}/pause")
        firings = (await _show(client, trigger["id"]))["firings"]
        runs = [f for f in firings if f["status"] == "started"]
        for firing in runs:
            await _completed(client, firing["execution_id"])  # each ran to completion
        assert len(runs) >= 2
        await client.delete(f"/api/triggers/{trigger['id']}")


async def test_a_trigger_of_a_playbook_not_in_the_catalog_is_refused(api: TriggerApi) -> None:
    async with api.client("operator") as client:
        response = await client.post("/api/triggers", json={"path": unique("absent"), "every": "1m"})
        assert response.status_code == 404, response.text
        response = await client.post("/api/triggers", json={"path": "x", "cron": "61 * * * *"})
        assert response.status_code in (400, 422), response.text
        assert "minute" in response.text


async def test_declared_triggers_are_registered_with_the_playbook_and_removed_with_it(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = unique("declared")
        text = playbook(path, """
            triggers:
              - name: nightly
                cron: "30 2 * * *"
                tz: America/New_York
              - webhook: true
            workflow:
              - step: start
                tool: {kind: noop}
            """)
        registered = await register(client, text)
        kinds = {t["name"]: t for t in registered["triggers"]}
        assert set(kinds) == {"nightly", "webhook-2"} and kinds["webhook-2"]["secret"]
        again = await register(client, text)
        assert {t["id"] for t in again["triggers"]} == {t["id"] for t in registered["triggers"]}
        assert all(t["secret"] is None for t in again["triggers"])  # the secret was shown once
        listed = (await client.get("/api/triggers", params={"path": path})).json()["items"]
        assert {t["source"] for t in listed} == {"playbook"} and len(listed) == 2
        await register(client, playbook(path, """
            workflow:
              - step: start
                tool: {kind: noop}
            """))
        assert (await client.get("/api/triggers", params={"path": path})).json()["items"] == []


async def test_an_after_trigger_fires_only_for_runs_that_end_after_it_was_created_or_resumed(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        upstream = await _echo(client, "before")
        downstream = await _echo(client, "after")
        response = await client.post("/api/execute", json={"path": upstream})
        await _completed(client, str(response.json()["execution_id"]))
        trigger = await _create(client, path=downstream, after={"path": upstream}, paused=True)
        await client.post(f"/api/triggers/{trigger['id']}/resume")
        record = await api.service.get(trigger["id"])
        assert await api.service.tick_after(record) == []  # the run ended before: nothing fires
        response = await client.post("/api/execute", json={"path": upstream})
        later = str(response.json()["execution_id"])
        await _completed(client, later)

        async def fired() -> list[dict[str, Any]] | None:
            return (await _show(client, trigger["id"]))["firings"] or None

        [firing] = await poll(fired, timeout_s=30, what="the after trigger to fire for the later run")
        summary = await _completed(client, firing["execution_id"])
        assert summary["result"]["seen"]["upstream"]["execution_id"] == later
        await client.delete(f"/api/triggers/{trigger['id']}")


async def test_a_declared_trigger_that_becomes_a_webhook_gets_a_secret_that_signs_its_deliveries(
        api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = unique("becomes_hook")
        step = "workflow:\n  - step: start\n    tool: {kind: noop}\n"
        first = await register(client, playbook(path, "triggers:\n  - {name: in, every: 1h}\n" + step))
        again = await register(client, playbook(path, "triggers:\n  - {name: in, webhook: true}\n" + step))
        [before], [after] = first["triggers"], again["triggers"]
        assert before["id"] == after["id"] and after["kind"] == "webhook" and after["secret"]
    body = b"{}"
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        answer = await anonymous.post(after["webhook_path"], content=body, headers={
            "Content-Type": "application/json", "X-NoETL-Signature": _signed(after["secret"], body)})
    assert answer.status_code == 202, answer.text


async def test_a_playbook_declaring_a_subject_nats_cannot_read_is_not_registered(api: TriggerApi) -> None:
    async with api.client("operator") as client:
        path = unique("own_subject")
        own = f"{api.stack.config.prefix}.evt.x"
        text = playbook(path, f"triggers:\n  - subject: {own}\n"
                                "workflow:\n  - step: start\n    tool: {kind: noop}\n")
        response = await client.post("/api/catalog/register", headers={"Content-Type": "application/yaml"},
                                     content=text)
        assert response.status_code == 400, response.text
        assert "NoETL's own" in response.text and "triggers[0].subject" in response.text
        versions = await client.get("/api/catalog/playbook", params={"path": path})
        assert versions.status_code == 404  # nothing was stored
