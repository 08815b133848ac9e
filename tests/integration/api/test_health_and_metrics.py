"""GET /health needs no token; GET /metrics shows what the runs did."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api.helpers import Api, execute, playbook, register, unique, wait_ended

pytestmark = pytest.mark.anyio


async def test_health_answers_ok_without_a_token_when_postgres_and_nats_are_up(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        response = await anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "postgres": True, "nats": True}


async def test_metrics_after_a_run_count_executions_step_outcomes_durations_and_queue_depth(
        api: Api, admin: httpx.AsyncClient) -> None:
    name = unique("metrics")
    await register(admin, playbook(name, """\
        workflow:
          - step: a
            tool: {kind: python, code: "result = 1"}
            next: {arcs: [{step: b}]}
          - step: b
            tool: {kind: noop}
        """))
    execution = await wait_ended(admin, await execute(admin, name))
    assert execution["status"] == "completed"
    async with api.client("viewer") as viewer:
        response = await viewer.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'noetl_executions{status="completed"}' in text
    assert 'noetl_step_outcomes_total{outcome="step.succeeded"}' in text
    assert "noetl_step_duration_seconds_count" in text
    assert "noetl_step_duration_seconds_bucket" in text
    assert 'noetl_queue_depth{pool="default"}' in text
