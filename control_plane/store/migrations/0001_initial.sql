-- The initial schema: executions, the append-only event log, the playbook catalog, credentials.
-- Applied in one transaction by control_plane/store/migrate.py; never edit after release (add 0002_...).

CREATE TABLE executions (
    execution_id        text PRIMARY KEY,
    playbook_path       text NOT NULL,
    playbook_version    integer NOT NULL,
    playbook_text       text NOT NULL DEFAULT '',
    status              text NOT NULL DEFAULT 'pending',
    payload             jsonb NOT NULL DEFAULT '{}'::jsonb,
    parent_execution_id text REFERENCES executions (execution_id),
    parent_step         text,
    -- the seq of the execution's last stored event: the per-execution counter, bumped under the row lock
    last_seq            bigint NOT NULL DEFAULT 0,
    -- set in the transaction that stores the execution's first terminal event
    ended_at            timestamptz,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX executions_by_created ON executions (created_at DESC, execution_id DESC);
CREATE INDEX executions_by_path ON executions (playbook_path, created_at DESC, execution_id DESC);
CREATE INDEX executions_by_status ON executions (status, created_at DESC, execution_id DESC);
CREATE INDEX executions_by_parent ON executions (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
CREATE INDEX executions_active ON executions (created_at, execution_id) WHERE ended_at IS NULL;

CREATE TABLE events (
    execution_id    text NOT NULL REFERENCES executions (execution_id),
    seq             bigint NOT NULL CHECK (seq > 0),
    event_id        text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    type            text NOT NULL,
    step            text,
    loop_index      integer,
    derived         boolean NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    body            jsonb NOT NULL,  -- the whole event (engine.protocol.events.Event) except seq
    PRIMARY KEY (execution_id, seq)
);
CREATE INDEX events_by_event_id ON events (event_id);
CREATE INDEX events_by_type ON events (type, occurred_at);

-- the log is append-only: refuse row updates and deletes even from outside the code
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the events table is append-only: % is not allowed', TG_OP
        USING HINT = 'append a new event instead of changing a stored one';
END;
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- one row per catalog path: the last version number handed out (never reused, even after a delete)
CREATE TABLE playbook_paths (
    path         text PRIMARY KEY,
    last_version integer NOT NULL CHECK (last_version > 0)
);

CREATE TABLE playbook_versions (
    path        text NOT NULL REFERENCES playbook_paths (path),
    version     integer NOT NULL CHECK (version > 0),
    text        text NOT NULL,
    canonical   jsonb NOT NULL,
    name        text,
    description text,
    tags        text[] NOT NULL DEFAULT '{}',
    labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (path, version)
);
CREATE INDEX playbook_versions_by_tag ON playbook_versions USING gin (tags);

-- values are AES-256-GCM ciphertext (associated data: the name); key_id names the key, never reveals it
CREATE TABLE credentials (
    name        text PRIMARY KEY,
    type        text NOT NULL,
    description text,
    key_id      text NOT NULL,
    nonce       bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
