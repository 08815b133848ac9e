-- API tokens: only the SHA-256 of each token is stored; the token itself is shown once, at creation.

CREATE TABLE api_tokens (
    token_id     text PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_by_created ON api_tokens (created_at, token_id);
