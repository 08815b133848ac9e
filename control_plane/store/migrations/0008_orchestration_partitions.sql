-- Orchestration partitions (docs/runtime.md "Partitions"): the orchestrator processes that are members,
-- and one lease per partition. A partition has one owner at a time; `epoch` grows at every change of
-- owner, and an owner's appends carry the epochs it holds (noetl_check_fence), so a former owner that
-- stalled and lost its lease cannot write to the log any more.

CREATE TABLE orchestrators (
    member_id  text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    seen_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE orchestration_partitions (
    partition   integer PRIMARY KEY,
    owner       text,            -- a member_id; NULL: released
    epoch       bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz,     -- the owner renews it while it lives
    acquired_at timestamptz
);

-- raises NE003 unless `owner` holds each partition of `parts` at the epoch of the same place in `epochs`;
-- the rows stay share-locked until the calling transaction ends, so a takeover waits for an append that
-- passed the check, and an append that comes after a takeover fails it
CREATE FUNCTION noetl_check_fence(fence_owner text, parts integer[], epochs bigint[]) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    held integer;
BEGIN
    SELECT count(*) INTO held FROM (
        SELECT 1 FROM orchestration_partitions p
        JOIN unnest(parts, epochs) AS f(part, epoch) ON f.part = p.partition AND f.epoch = p.epoch
        WHERE p.owner = fence_owner
        ORDER BY p.partition
        FOR SHARE OF p) AS locked;
    IF held < cardinality(parts) THEN
        RAISE EXCEPTION 'orchestrator % no longer owns every partition of this append (partitions %, epochs %)',
            fence_owner, parts, epochs USING ERRCODE = 'NE003';
    END IF;
    RETURN true;
END $$;
