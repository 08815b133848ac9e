"""GET /api/executions/{id}/diagnosis over the app (ASGI, in process), with the diagnosis service that the
serving process puts in `app.state.diagnosis`."""

from __future__ import annotations

import httpx
import pytest

from agents.diagnosis.service import DiagnosisService
from control_plane.api import diagnosis as diagnosis_api
from control_plane.app import ApiServices, create_app
from control_plane.services.secrets import SecretValues
from control_plane.stack import Stack
from tests.harness.control_plane import bootstrap_tokens
from tests.integration.runtime.test_diagnosis import UPSTREAM_EMPTY, register, run

pytestmark = pytest.mark.anyio


async def test_the_diagnosis_route_answers_the_model_as_json(stack: Stack) -> None:
    assert stack.executions is not None and stack.store is not None
    execution_id = await run(stack, await register(stack, UPSTREAM_EMPTY))
    app = create_app(ApiServices.from_stack(stack))
    if not any(getattr(r, "path", "") == "/api/executions/{id}/diagnosis" for r in app.routes):
        app.include_router(diagnosis_api.router)  # until control_plane.app lists the router itself
    token = (await bootstrap_tokens(stack))["viewer"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        unavailable = await client.get(f"/api/executions/{execution_id}/diagnosis")
        assert unavailable.status_code == 503 and unavailable.json()["code"] == "diagnosis_unavailable"
        app.state.diagnosis = DiagnosisService(stack.executions, secrets=SecretValues(stack.store))
        found = await client.get(f"/api/executions/{execution_id}/diagnosis")
        assert found.status_code == 200, found.text
        body = found.json()
        assert (body["root_cause_step"], body["root_cause_type"], body["transience"]) == \
            ("fetch_orders", "validation", "permanent")
        missing = await client.get("/api/executions/no-such-execution/diagnosis")
        assert missing.status_code == 404
        anonymous = await client.get(f"/api/executions/{execution_id}/diagnosis",
                                     headers={"Authorization": ""})
        assert anonymous.status_code == 401
