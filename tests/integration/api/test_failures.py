"""What the API answers when what is behind it fails: 503 when Postgres or NATS is unreachable, a 500
that shows nothing of an unexpected error (which is logged). Driven over ASGI with stub services."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from unittest.mock import AsyncMock, MagicMock

import httpx
import pytest

from control_plane.app import ApiServices, HealthReport, create_app
from control_plane.errors import DatabaseUnavailableError
from control_plane.store.tokens import TokenInfo
from engine.bus.jetstream import BusError
from tests.integration.api.helpers import assert_problem

pytestmark = pytest.mark.anyio


class OperationalError(Exception):
    """Stands for psycopg's (a lost connection), recognized by its name and module."""


OperationalError.__module__ = "psycopg.errors"


def stub_services(*, postgres: bool = True, nats: bool = True) -> ApiServices:
    auth = MagicMock()
    auth.authorize = AsyncMock(return_value=TokenInfo("t1", "stub", "admin", datetime.now(UTC), None))

    async def health() -> HealthReport:
        return HealthReport(postgres=postgres, nats=nats)

    return ApiServices(auth=auth, catalog=MagicMock(), executions=MagicMock(), credentials=MagicMock(),
                       metrics=MagicMock(), health=health)


@asynccontextmanager
async def client_of(services: ApiServices) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                 headers={"Authorization": "Bearer noetl_stub"}) as client:
        yield client


@pytest.mark.parametrize(("postgres", "nats"), [(False, True), (True, False), (False, False)])
async def test_health_is_503_degraded_when_postgres_or_nats_is_unreachable(postgres: bool,
                                                                            nats: bool) -> None:
    async with client_of(stub_services(postgres=postgres, nats=nats)) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "postgres": postgres, "nats": nats}


@pytest.mark.parametrize("error", [
    DatabaseUnavailableError("could not connect to Postgres within 10s", where="postgresql://x"),
    BusError("NATS is unreachable", where="nats://x"),
    OperationalError("server closed the connection unexpectedly"),
])
async def test_an_unreachable_postgres_or_nats_is_answered_503(error: Exception) -> None:
    services = stub_services()
    services.catalog.list = AsyncMock(side_effect=error)  # type: ignore[attr-defined]
    async with client_of(services) as client:
        response = await client.get("/api/catalog")
    assert_problem(response, 503)


async def test_an_unexpected_error_is_a_500_that_shows_nothing_of_it_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    services = stub_services()
    services.credentials.list = AsyncMock(  # type: ignore[attr-defined]
        side_effect=RuntimeError("internal detail: table x, password hunter2"))
    with caplog.at_level(logging.ERROR):
        async with client_of(services) as client:
            response = await client.get("/api/credentials")
    doc = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text and "internal detail" not in response.text
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)
    assert doc["detail"] == "the server failed to answer this request"
