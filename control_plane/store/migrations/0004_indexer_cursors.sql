-- Where each follower of the event log stopped (agents/embeddings/indexer.py keeps its position here),
-- and the order it follows: executions in the order they ended.

CREATE TABLE indexer_cursors (
    name       text PRIMARY KEY,
    position   jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX executions_by_ended ON executions (ended_at, execution_id) WHERE ended_at IS NOT NULL;
