"""The analytics exporter: the event log -> ClickHouse and/or Parquet (events, step_runs, executions)."""
