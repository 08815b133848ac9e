-- Guarded configuration changes (docs/policies.md): proposals, every transition of their workflow with who
-- and why, and the versioned runtime overlays of playbook steps that new executions carry and the engine
-- lays over the catalog's playbook (the catalog's text is never changed).

CREATE TABLE proposals (
    proposal_id     text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('change', 'rollback')),
    path            text NOT NULL,
    step            text NOT NULL,
    change          jsonb,  -- the overlay fields the change sets (null for a rollback)
    rollback_of     text REFERENCES proposals (proposal_id),
    rationale       text NOT NULL,
    diagnosis       jsonb,
    evidence        jsonb NOT NULL DEFAULT '[]'::jsonb,
    transience      text,
    author          text NOT NULL,
    author_name     text,
    risk            text NOT NULL CHECK (risk IN ('low', 'medium', 'high')),
    state           text NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'applied', 'verified',
                                                   'rolled_back', 'expired')),
    base_version    integer,  -- the step's overlay version when the change was applied
    applied_version integer,  -- the overlay version the change (or the rollback) created
    applied_at      timestamptz,
    overlay         jsonb,    -- the whole overlay of applied_version
    measurement     jsonb,
    rollback_id     text,     -- the rollback proposed for this change
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX proposals_by_target ON proposals (path, step, created_at DESC);
CREATE INDEX proposals_by_state ON proposals (state, created_at DESC, proposal_id DESC);
CREATE INDEX proposals_by_created ON proposals (created_at DESC, proposal_id DESC);
-- the guardrail "no change to a step with an open proposal", held here too against concurrent proposers
CREATE UNIQUE INDEX proposals_one_open_change ON proposals (path, step)
    WHERE kind = 'change' AND state IN ('proposed', 'approved', 'applied');
CREATE UNIQUE INDEX proposals_one_open_rollback ON proposals (path, step)
    WHERE kind = 'rollback' AND state IN ('proposed', 'approved');

CREATE TABLE proposal_transitions (
    proposal_id text NOT NULL REFERENCES proposals (proposal_id),
    seq         integer NOT NULL CHECK (seq > 0),
    from_state  text,
    to_state    text NOT NULL,
    who         text NOT NULL,
    who_name    text,
    why         text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (proposal_id, seq)
);

-- one row per version of a step's overlay; the active overlay is the highest version
CREATE TABLE policy_overlays (
    path        text NOT NULL,
    step        text NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    overlay     jsonb NOT NULL,
    proposal_id text REFERENCES proposals (proposal_id),
    restores    integer,  -- a rollback: the version whose overlay this one holds again (0: none)
    created_by  text NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (path, step, version)
);

-- the history only grows: refuse updates and deletes of transitions and overlay versions
CREATE FUNCTION policies_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the % table is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING HINT = 'record a new transition or a new overlay version instead';
END;
$$;
CREATE TRIGGER proposal_transitions_append_only BEFORE UPDATE OR DELETE ON proposal_transitions
    FOR EACH ROW EXECUTE FUNCTION policies_append_only();
CREATE TRIGGER policy_overlays_append_only BEFORE UPDATE OR DELETE ON policy_overlays
    FOR EACH ROW EXECUTE FUNCTION policies_append_only();
