"""The Parquet sink (the one agents module that imports pyarrow): the three tables as directories of
Parquet files, hive-style by day (UTC): <dir>/<table>/date=YYYY-MM-DD/<batch id>.parquet.

A batch's file is named by the batch id (deterministic per cursor range) and written atomically (a
temporary file, then a rename): a batch written again after a restart replaces its own files, never adds
rows. Read them with DuckDB (`read_parquet('<dir>/events/*/*.parquet', hive_partitioning = true)`),
pandas or Spark.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from datetime import UTC
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agents.analytics.rows import TABLES, TIME_COLUMN, Rows

_TYPES = {"str": pa.string(), "int": pa.int64(), "int?": pa.int64(), "float?": pa.float64(),
          "bool": pa.bool_(), "ts": pa.timestamp("us", tz="UTC"), "ts?": pa.timestamp("us", tz="UTC")}


def schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(name, _TYPES[kind], nullable=kind.endswith("?"))
                      for name, kind in TABLES[table]])


class ParquetSink:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.description = f"parquet {self.directory}"

    def write(self, batch_id: str, rows: Rows) -> None:
        for table, records in rows.tables.items():
            by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for record in records:
                by_day[record[TIME_COLUMN[table]].astimezone(UTC).date().isoformat()].append(record)
            for day, day_rows in by_day.items():
                folder = self.directory / table / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{batch_id}.parquet"
                temporary = folder / f".{batch_id}.{uuid.uuid4().hex}.tmp"
                try:
                    pq.write_table(pa.Table.from_pylist(day_rows, schema=schema(table)), temporary)
                    os.replace(temporary, target)
                except OSError as exc:
                    temporary.unlink(missing_ok=True)
                    raise OSError(f"cannot write {target}: {exc.strerror or exc}; check that "
                                  "NOETL_EXPORT_DIR "
                                  f"({self.directory}) is writable and has space") from None

    def close(self) -> None:
        pass
