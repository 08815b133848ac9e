"""The tools a step runs: python, http, postgres, duckdb, clickhouse, qdrant, shell, workbook, noop..."""
