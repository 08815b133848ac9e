-- The analytics exporter (agents/analytics): a commit-order-safe position in the event log, and the
-- exporter's state. Independent of the other migrations after 0008.
--
-- Each event row records the id of the transaction that appended it (`txid`, pg_current_xact_id()).
-- A reader that takes xmin of its snapshot (pg_snapshot_xmin(pg_current_snapshot())) knows every
-- transaction with a smaller id has ended: the rows with txid < xmin are final (committed and visible,
-- or rolled back and never visible), so a follower that reads in (txid, execution_id, seq) order up
-- to that bound never skips a row committed out of order, whatever the number of writers, and needs
-- no time lag. Rows appended before this migration keep txid NULL and are read first, in key order.
-- Adding a nullable column and then its default rewrites nothing (instant on a large log).

ALTER TABLE events ADD COLUMN txid xid8;
ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_by_txid ON events (txid, execution_id, seq) WHERE txid IS NOT NULL;

-- one row per exporter (its name): where it stands, what it wrote, what went wrong last
CREATE TABLE export_cursors (
    name           text PRIMARY KEY,
    position       jsonb NOT NULL,              -- {"key": [txid, execution_id, seq], "pending": {...}}
    rows_exported  jsonb NOT NULL DEFAULT '{}'::jsonb,  -- table -> rows written (re-exports included)
    sinks          text[] NOT NULL DEFAULT '{}',  -- the sinks' descriptions, passwords masked
    last_export_at timestamptz,
    last_error     text,
    last_error_at  timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
