-- The web console's sign-ins (docs/console.md): sessions and one-time sign-in links. Only the SHA-256 of a
-- session id or of a link's code is stored; each acts as its API token, so revoking the token ends them.

CREATE TABLE console_sessions (
    session_hash bytea PRIMARY KEY,
    token_id     text NOT NULL REFERENCES api_tokens (token_id),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz  -- signed out
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

CREATE TABLE console_links (
    code_hash  bytea PRIMARY KEY,
    token_id   text NOT NULL REFERENCES api_tokens (token_id),
    path       text NOT NULL,  -- where the link leads after sign-in: a /ui path
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz  -- a link signs in once
);
CREATE INDEX console_links_by_expiry ON console_links (expires_at);
