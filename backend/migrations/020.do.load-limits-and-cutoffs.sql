-- Load counting, limits and cut-off (ours, issue 13; docs/LOAD.md "Backend").
--
-- 1. Counting-rule lifecycle: EMQX's `cnt-unit-<unit>` / `cnt-node-<node>` rules are created and
--    deleted with their owner. Every writer of `units` / `units_nodes` (REST, imports, an
--    operator's SQL) fires these triggers; the backend LISTENs on `pepeunit_load_owners` and
--    reconciles the unit's rules (a periodic bulk reconcile heals anything missed). Payloads:
--    `u:<unit uuid>` (unit or one of its nodes inserted, unit deleted, node moved) and
--    `n:<unit uuid>:<node uuid>` (node deleted: its rule id does not contain the unit).
--    NOTIFY drops identical payloads inside one transaction, so a unit created with 30 nodes
--    sends one `u:` notification.
CREATE OR REPLACE FUNCTION pepeunit_load_owner_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'units' THEN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('pepeunit_load_owners', 'u:' || OLD.uuid::text);
        ELSE
            PERFORM pg_notify('pepeunit_load_owners', 'u:' || NEW.uuid::text);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.unit_uuid IS NOT NULL THEN
            PERFORM pg_notify('pepeunit_load_owners', 'n:' || OLD.unit_uuid::text || ':' || OLD.uuid::text);
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.unit_uuid IS NOT NULL THEN
            PERFORM pg_notify('pepeunit_load_owners', 'n:' || OLD.unit_uuid::text || ':' || OLD.uuid::text);
        END IF;
        IF NEW.unit_uuid IS NOT NULL THEN
            PERFORM pg_notify('pepeunit_load_owners', 'u:' || NEW.unit_uuid::text);
        END IF;
    ELSIF NEW.unit_uuid IS NOT NULL THEN
        PERFORM pg_notify('pepeunit_load_owners', 'u:' || NEW.unit_uuid::text);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS trg_units_load_owner ON units;
CREATE TRIGGER trg_units_load_owner AFTER INSERT OR DELETE ON units
    FOR EACH ROW EXECUTE FUNCTION pepeunit_load_owner_changed();
DROP TRIGGER IF EXISTS trg_units_nodes_load_owner ON units_nodes;
CREATE TRIGGER trg_units_nodes_load_owner AFTER INSERT OR DELETE ON units_nodes
    FOR EACH ROW EXECUTE FUNCTION pepeunit_load_owner_changed();
DROP TRIGGER IF EXISTS trg_units_nodes_load_owner_moved ON units_nodes;
CREATE TRIGGER trg_units_nodes_load_owner_moved AFTER UPDATE OF unit_uuid ON units_nodes
    FOR EACH ROW WHEN (OLD.unit_uuid IS DISTINCT FROM NEW.unit_uuid) EXECUTE FUNCTION pepeunit_load_owner_changed();

-- 2. Per-user MPS limit set by an admin (overrides PU_LOAD_UNIT_MPS_LIMIT for the user's units;
--    0 = no limit). External sources (billing) can only lower the effective limit.
CREATE TABLE IF NOT EXISTS load_user_limits (
    user_uuid uuid PRIMARY KEY, -- no FK (the schema test keeps FKs to the reference ones): rows of deleted users are removed by the load reconcile
    mps_limit double precision NOT NULL CHECK (mps_limit >= 0 AND mps_limit <= 1000000),
    set_by uuid, -- the admin (kept when the account is deleted)
    update_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

-- 3. Cut-off state of a unit: the current ban (if any) and where it stands on the ladder.
--    `step` is the 0-based ladder step of the latest cut-off; `released_at` is set when the ban
--    ended (expiry, admin lift). A repeat within PU_LOAD_CUTOFF_RESET seconds of `released_at`
--    goes one step up.
CREATE TABLE IF NOT EXISTS load_unit_cutoffs (
    unit_uuid uuid PRIMARY KEY, -- no FK: removed with the unit by the load component (its ban is lifted then)
    step integer NOT NULL CHECK (step >= 0),
    active boolean NOT NULL,
    reason text NOT NULL,
    mps double precision NOT NULL,
    limit_mps double precision NOT NULL,
    limit_source varchar(64) NOT NULL,
    cut_at timestamp without time zone NOT NULL,
    until timestamp without time zone NOT NULL,
    released_at timestamp without time zone,
    release_reason varchar(32),
    update_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE INDEX IF NOT EXISTS idx_load_unit_cutoffs_active_until ON load_unit_cutoffs (until) WHERE active;

-- 4. Every decision (append-only; kept after the unit or the admin is deleted, so no FKs).
CREATE TABLE IF NOT EXISTS load_decisions (
    id bigserial PRIMARY KEY,
    unit_uuid uuid NOT NULL,
    creator_uuid uuid,
    decision varchar(16) NOT NULL CHECK (decision IN ('cutoff', 'release', 'lift', 'extend', 'ban_failed')),
    step integer,
    mps double precision,
    limit_mps double precision,
    limit_source varchar(64),
    until timestamp without time zone,
    actor varchar(64) NOT NULL, -- 'system' or 'admin:<uuid>'
    detail text NOT NULL DEFAULT '',
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE INDEX IF NOT EXISTS idx_load_decisions_unit ON load_decisions (unit_uuid, create_datetime DESC);
CREATE INDEX IF NOT EXISTS idx_load_decisions_time ON load_decisions (create_datetime DESC);
