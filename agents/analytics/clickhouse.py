"""The ClickHouse sink (the one agents module that imports clickhouse_connect): three tables, created on
the first write, each a ReplacingMergeTree so that a batch written again replaces its rows.

Keys (what the queries filter on first, and a row's identity last, so that a re-exported row has the same
sorting key and is merged away; count with FINAL, or uniqExact of the identity, before merges):

- events: PARTITION BY toYYYYMM(occurred_at), ORDER BY (type, playbook_path, occurred_at, execution_id,
  seq): failures by type then playbook over a time range ("failures by error signature this week");
- step_runs: PARTITION BY toYYYYMM(at), ORDER BY (playbook_path, step, at, execution_id, command_id,
  attempt): "p50/p95 of a playbook's step durations over the last 7 days" reads one contiguous range;
- executions: ReplacingMergeTree(last_seq), PARTITION BY toYYYYMM(created_at), ORDER BY
  (playbook_path, created_at, execution_id): a playbook's runs over time; the newest row wins.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from agents.analytics.exporter import masked
from agents.analytics.rows import TABLES, Rows

_TYPES = {"str": "String", "int": "Int64", "int?": "Nullable(Int64)", "float?": "Nullable(Float64)",
          "bool": "Bool", "ts": "DateTime64(6, 'UTC')", "ts?": "Nullable(DateTime64(6, 'UTC'))"}
_LOW = {"type", "pool", "status", "error_kind"}  # few distinct values
_ENGINES = {
    "events": ("ReplacingMergeTree", "toYYYYMM(occurred_at)",
               "(type, playbook_path, occurred_at, execution_id, seq)"),
    "step_runs": ("ReplacingMergeTree", "toYYYYMM(at)",
                  "(playbook_path, step, at, execution_id, command_id, attempt)"),
    "executions": ("ReplacingMergeTree(last_seq)", "toYYYYMM(created_at)",
                   "(playbook_path, created_at, execution_id)"),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClickHouseSinkError(RuntimeError):
    """The sink could not write: what, where (the masked URL) and how to fix it."""


def ddl(database: str, table: str) -> str:
    columns = ", ".join(f"`{name}` " + (f"LowCardinality({_TYPES[kind]})" if name in _LOW else _TYPES[kind])
                        for name, kind in TABLES[table])
    engine, partition, order = _ENGINES[table]
    return (f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ({columns}) ENGINE = {engine} "
            f"PARTITION BY {partition} ORDER BY {order}")


class ClickHouseSink:
    def __init__(self, url: str, *, database: str | None = None) -> None:
        self.url = url
        parts = urlsplit(url)
        # chdb:///a/dir names a directory, not a database
        self.database = database or (parts.path.strip("/") if parts.scheme != "chdb" else "") or "noetl"
        if not _NAME.match(self.database):
            raise ClickHouseSinkError(f"'{self.database}' is not a usable ClickHouse database name (from "
                                      f"{masked(url)}); use letters, digits and _")
        self.description = f"clickhouse {masked(url)} database {self.database}"
        self._client: Any = None
        self._lock = threading.Lock()
        self._ready = False

    def _connect(self) -> Any:
        if self._client is None:
            try:
                if self.url.startswith("chdb:"):
                    self._client = clickhouse_connect.get_client(dsn=self.url)
                else:
                    self._client = clickhouse_connect.get_client(dsn=self.url, database="default")
            except Exception as exc:
                raise self._error("cannot connect", exc) from None
        return self._client

    def _error(self, what: str, exc: BaseException) -> ClickHouseSinkError:
        text = " ".join(str(exc).split())[:300]
        parts = urlsplit(self.url)
        if parts.password:
            text = text.replace(parts.password, "***")
        return ClickHouseSinkError(f"ClickHouse at {masked(self.url)}: {what}: {text}; check that the server "
                                   "answers and NOETL_CLICKHOUSE_URL (http://user:password@host:8123/db); "
                                   "the exporter keeps its cursor and tries again")

    def ensure_tables(self) -> None:
        client = self._connect()
        try:
            client.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            for table in TABLES:
                client.command(ddl(self.database, table))
        except Exception as exc:
            raise self._error("cannot create the tables", exc) from None
        self._ready = True

    def write(self, batch_id: str, rows: Rows) -> None:
        with self._lock:
            if not self._ready:
                self.ensure_tables()
            client = self._connect()
            for table, records in rows.tables.items():
                if not records:
                    continue
                names = [name for name, _ in TABLES[table]]
                data = [[record[name] for name in names] for record in records]
                try:
                    client.insert(f"`{self.database}`.`{table}`", data, column_names=names)
                except Exception as exc:
                    self._client, self._ready = None, False  # connect again next time
                    raise self._error(f"cannot insert batch {batch_id} into {table}", exc) from None

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a query (tests, status checks)."""
        with self._lock:
            return list(self._connect().query(sql).result_rows)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                client, self._client = self._client, None
                client.close()
