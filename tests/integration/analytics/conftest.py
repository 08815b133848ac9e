"""The analytics exporter on a real runtime: a Stack on the session's NATS and a fresh Postgres database
per test (tests/integration/runtime's fixtures); ClickHouse is chDB in this process (clickhouse-connect's
chdb:// DSN), one database per test."""

from __future__ import annotations

from tests.harness.runtime import runtime_env  # noqa: F401 - a fixture
from tests.integration.runtime.conftest import stack  # noqa: F401 - a fixture
