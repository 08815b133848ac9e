-- Triggers (docs/triggers.md): what starts executions besides a request — cron, intervals, the end of
-- another execution, NATS messages and webhooks — their firings, and the append-only log of what each
-- firing did.
--
-- Exactly once: a firing's id is a pure function of the trigger and the time it was scheduled for (or the
-- message, the upstream execution, the webhook delivery), so whoever computes it first inserts the row
-- and every other server process, restart or redelivery finds it there (ON CONFLICT DO NOTHING). The
-- row holds the execution id before the execution is started, and starting an execution under a given
-- id is idempotent, so a firing left `pending` by a crash is started again under the same id.

CREATE TABLE triggers (
    trigger_id        text PRIMARY KEY,
    name              text,                         -- a declared trigger's name in its playbook
    path              text NOT NULL,                -- the playbook it starts
    version           integer,                      -- NULL: the newest version at each firing
    kind              text NOT NULL CHECK (kind IN ('cron', 'interval', 'after', 'subject', 'webhook')),
    spec              jsonb NOT NULL,               -- the declaration (engine.dsl.triggers.TriggerSpec)
    source            text NOT NULL CHECK (source IN ('api', 'playbook')),
    paused            boolean NOT NULL DEFAULT false,
    -- cron/interval: the last scheduled time decided; after: the ended_at up to which ends were read
    cursor_at         timestamptz NOT NULL,
    -- created or last resumed: an `after` trigger fires for the runs that end after it
    active_since      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- a webhook's HMAC key, sealed with the credentials' key (associated data: the trigger id)
    secret_key_id     text,
    secret_nonce      bytea,
    secret_ciphertext bytea,
    created_by        text,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX triggers_by_path ON triggers (path);

CREATE TABLE trigger_firings (
    firing_id    text PRIMARY KEY,
    trigger_id   text NOT NULL REFERENCES triggers (trigger_id) ON DELETE CASCADE,
    scheduled_at timestamptz NOT NULL,               -- the time it was due (for events: when it came)
    status       text NOT NULL CHECK (status IN ('pending', 'queued', 'started', 'skipped', 'failed')),
    reason       text,                               -- why it was skipped, queued or failed
    execution_id text,                               -- chosen when the firing is recorded
    source_key   text,                               -- the message id, upstream execution or delivery
    payload      jsonb,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX trigger_firings_recent ON trigger_firings (trigger_id, scheduled_at DESC);
CREATE INDEX trigger_firings_open ON trigger_firings (trigger_id, created_at)
    WHERE status IN ('pending', 'queued');
CREATE INDEX trigger_firings_by_source ON trigger_firings (trigger_id, source_key);

-- every firing, start, queueing, skip (with its reason) and failure, in order; kept after the trigger
CREATE TABLE trigger_events (
    seq          bigserial PRIMARY KEY,
    trigger_id   text NOT NULL,
    firing_id    text,
    type         text NOT NULL,                      -- trigger.fired, trigger.started, trigger.skipped, …
    reason       text,
    execution_id text,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    body         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX trigger_events_by_trigger ON trigger_events (trigger_id, seq DESC);
CREATE INDEX trigger_events_by_type ON trigger_events (type, occurred_at);
