-- Our additions on top of the reference schema (001). Nothing here changes a column, so
-- data and the Python tooling still carry over.
--
-- 1. Indexes on every foreign-key column. PostgreSQL does not index the referencing side by
--    itself; without them each ON DELETE CASCADE (deleting a user, repo, unit, node...) scans
--    the child tables, and the common "children of X" lookups are sequential scans.
--    Named idx_<table>_<column> so they never collide with the reference's ix_* names.
CREATE INDEX idx_repository_registry_creator_uuid ON repository_registry (creator_uuid);
CREATE INDEX idx_repos_creator_uuid ON repos (creator_uuid);
CREATE INDEX idx_repos_repository_registry_uuid ON repos (repository_registry_uuid);
CREATE INDEX idx_units_creator_uuid ON units (creator_uuid);
CREATE INDEX idx_units_repo_uuid ON units (repo_uuid);
CREATE INDEX idx_units_nodes_creator_uuid ON units_nodes (creator_uuid);
CREATE INDEX idx_units_nodes_unit_uuid ON units_nodes (unit_uuid);
CREATE INDEX idx_units_nodes_edges_node_output_uuid ON units_nodes_edges (node_output_uuid);
CREATE INDEX idx_units_nodes_edges_node_input_uuid ON units_nodes_edges (node_input_uuid);
CREATE INDEX idx_units_nodes_edges_creator_uuid ON units_nodes_edges (creator_uuid);
CREATE INDEX idx_permissions_agent_user_uuid ON permissions (agent_user_uuid);
CREATE INDEX idx_permissions_agent_unit_uuid ON permissions (agent_unit_uuid);
CREATE INDEX idx_permissions_resource_repo_uuid ON permissions (resource_repo_uuid);
CREATE INDEX idx_permissions_resource_unit_uuid ON permissions (resource_unit_uuid);
CREATE INDEX idx_permissions_resource_unit_node_uuid ON permissions (resource_unit_node_uuid);
CREATE INDEX idx_dashboards_creator_uuid ON dashboards (creator_uuid);
CREATE INDEX idx_dashboard_panels_creator_uuid ON dashboard_panels (creator_uuid);
CREATE INDEX idx_dashboard_panels_dashboard_uuid ON dashboard_panels (dashboard_uuid);
CREATE INDEX idx_mtm_panels_unit_nodes_creator_uuid ON mtm_panels_unit_nodes (creator_uuid);
CREATE INDEX idx_mtm_panels_unit_nodes_unit_node_uuid ON mtm_panels_unit_nodes (unit_node_uuid);
CREATE INDEX idx_mtm_panels_unit_nodes_dashboard_panels_uuid ON mtm_panels_unit_nodes (dashboard_panels_uuid);

-- The ingest (and the Go DataPipe) load only nodes with an enabled policy; a partial index
-- keeps that lookup proportional to the active nodes, not to all nodes.
CREATE INDEX idx_units_nodes_data_pipe_active ON units_nodes (uuid) WHERE is_data_pipe_active;

-- 2. CHECK constraints for enum columns whose value set is closed and documented
--    (reference §1.2 / §1.1), with exactly the reference values. NULL stays allowed where the
--    column is nullable (CHECK passes on NULL).
--    They are added NOT VALID and then validated one by one (block at the end): on a fresh
--    or clean database they end up fully validated; in an adopted reference database holding
--    an odd legacy value the affected constraint stays NOT VALID (still checked for every new
--    or updated row) and a NOTICE names it, so legacy data can never stop the platform
--    from starting.
--    Deliberately left unchecked: dashboard_panels.type (Grafana panel ids, an open set that
--    grows with Grafana and its plugins) and units.target_firmware_platform (free asset names).
--    Adding a value later = a new migration that drops and re-adds the constraint.
ALTER TABLE users
    ADD CONSTRAINT ck_users_role CHECK (role IN ('User', 'Admin')) NOT VALID,
    ADD CONSTRAINT ck_users_status CHECK (status IN ('Unverified', 'Verified', 'Blocked')) NOT VALID;
ALTER TABLE repository_registry
    ADD CONSTRAINT ck_repository_registry_platform CHECK (platform IN ('Gitlab', 'Github')) NOT VALID,
    ADD CONSTRAINT ck_repository_registry_sync_status CHECK (sync_status IN ('Updated', 'Processing', 'Error')) NOT VALID;
ALTER TABLE repos
    ADD CONSTRAINT ck_repos_visibility_level CHECK (visibility_level IN ('Public', 'Internal', 'Private')) NOT VALID;
ALTER TABLE units
    ADD CONSTRAINT ck_units_visibility_level CHECK (visibility_level IN ('Public', 'Internal', 'Private')) NOT VALID,
    ADD CONSTRAINT ck_units_firmware_update_status CHECK (firmware_update_status IN ('RequestSent', 'Error', 'Success')) NOT VALID;
ALTER TABLE units_nodes
    ADD CONSTRAINT ck_units_nodes_type CHECK (type IN ('Input', 'Output')) NOT VALID,
    ADD CONSTRAINT ck_units_nodes_visibility_level CHECK (visibility_level IN ('Public', 'Internal', 'Private')) NOT VALID,
    ADD CONSTRAINT ck_units_nodes_data_pipe_status CHECK (data_pipe_status IN ('Active', 'Inactive', 'Error')) NOT VALID;
ALTER TABLE permissions
    ADD CONSTRAINT ck_permissions_agent_type CHECK (agent_type IN ('User', 'Unit')) NOT VALID,
    ADD CONSTRAINT ck_permissions_resource_type CHECK (resource_type IN ('Repo', 'Unit', 'UnitNode')) NOT VALID;
ALTER TABLE dashboards
    ADD CONSTRAINT ck_dashboards_sync_status CHECK (sync_status IN ('Success', 'Processing', 'Error')) NOT VALID;

DO $$
DECLARE
  pending record;
BEGIN
  FOR pending IN
    SELECT conrelid::regclass AS table_name, conname AS constraint_name
    FROM pg_constraint
    WHERE contype = 'c' AND NOT convalidated AND conname LIKE 'ck\_%'
      AND connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  LOOP
    BEGIN
      EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', pending.table_name, pending.constraint_name);
    EXCEPTION WHEN check_violation THEN
      RAISE NOTICE 'constraint % on % left NOT VALID: existing rows hold values outside the reference enum',
        pending.constraint_name, pending.table_name;
    END;
  END LOOP;
END
$$;
