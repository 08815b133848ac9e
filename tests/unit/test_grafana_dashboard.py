"""deploy/grafana/noetl-dashboard.json: a Grafana dashboard over Prometheus (GET /metrics) and the analytics
exporter's ClickHouse tables; every Prometheus expression names metrics the server exposes, and every
ClickHouse query runs against the exporter's tables (chDB, the Grafana macros filled in)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import clickhouse_connect

from agents.analytics.clickhouse import ddl
from agents.analytics.rows import TABLES
from tests.conftest import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "noetl-dashboard.json"
METRICS_SOURCE = REPO / "control_plane" / "services" / "metrics.py"


def panels() -> list[dict]:  # type: ignore[type-arg]
    return list(json.loads(DASHBOARD.read_text())["panels"])


def test_the_dashboard_is_importable_with_its_two_datasources_as_inputs_and_distinct_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert {i["pluginId"] for i in doc["__inputs"]} == {"prometheus", "grafana-clickhouse-datasource"}
    assert doc["uid"] and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)) and all(p["targets"] and p["title"] for p in doc["panels"])
    for panel in doc["panels"]:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_prometheus_expression_names_a_metric_the_server_exposes() -> None:
    families = set(re.findall(r'MetricFamily\(\s*"(noetl_[a-z_]+)"', METRICS_SOURCE.read_text()))
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    exposed = {f"{name}{suffix}" for name in families for suffix in suffixes}
    expressions = [t["expr"] for p in panels() for t in p["targets"] if "expr" in t]
    assert expressions
    for expr in expressions:
        named = set(re.findall(r"\bnoetl_[a-z_]+", expr))
        assert named and named <= exposed, (expr, named - exposed)


def _filled(sql: str) -> str:
    """The query as Grafana's ClickHouse plugin would send it over the last 7 days, for every playbook."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 7 DAY", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfHour(\1)", sql)
    sql = sql.replace("${playbook}", "%")
    return re.sub(r"\bFROM (events|step_runs|executions)\b", r"FROM noetl.\1", sql)


def test_every_clickhouse_query_runs_against_the_exporters_tables(tmp_path: Path) -> None:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path}")
    client.command("CREATE DATABASE IF NOT EXISTS noetl")
    for table in TABLES:
        client.command(ddl("noetl", table))
    queries = [t["rawSql"] for p in panels() for t in p["targets"] if "rawSql" in t]
    assert len(queries) >= 4
    for sql in queries:
        client.query(_filled(sql))  # raises on an unknown table, column or function
