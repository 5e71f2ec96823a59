-- Reverts 002: removes our enum checks and foreign-key indexes; the reference schema stays.
ALTER TABLE dashboards DROP CONSTRAINT IF EXISTS ck_dashboards_sync_status;
ALTER TABLE permissions
    DROP CONSTRAINT IF EXISTS ck_permissions_resource_type,
    DROP CONSTRAINT IF EXISTS ck_permissions_agent_type;
ALTER TABLE units_nodes
    DROP CONSTRAINT IF EXISTS ck_units_nodes_data_pipe_status,
    DROP CONSTRAINT IF EXISTS ck_units_nodes_visibility_level,
    DROP CONSTRAINT IF EXISTS ck_units_nodes_type;
ALTER TABLE units
    DROP CONSTRAINT IF EXISTS ck_units_firmware_update_status,
    DROP CONSTRAINT IF EXISTS ck_units_visibility_level;
ALTER TABLE repos DROP CONSTRAINT IF EXISTS ck_repos_visibility_level;
ALTER TABLE repository_registry
    DROP CONSTRAINT IF EXISTS ck_repository_registry_sync_status,
    DROP CONSTRAINT IF EXISTS ck_repository_registry_platform;
ALTER TABLE users
    DROP CONSTRAINT IF EXISTS ck_users_status,
    DROP CONSTRAINT IF EXISTS ck_users_role;

DROP INDEX IF EXISTS idx_units_nodes_data_pipe_active;
DROP INDEX IF EXISTS idx_mtm_panels_unit_nodes_dashboard_panels_uuid;
DROP INDEX IF EXISTS idx_mtm_panels_unit_nodes_unit_node_uuid;
DROP INDEX IF EXISTS idx_mtm_panels_unit_nodes_creator_uuid;
DROP INDEX IF EXISTS idx_dashboard_panels_dashboard_uuid;
DROP INDEX IF EXISTS idx_dashboard_panels_creator_uuid;
DROP INDEX IF EXISTS idx_dashboards_creator_uuid;
DROP INDEX IF EXISTS idx_permissions_resource_unit_node_uuid;
DROP INDEX IF EXISTS idx_permissions_resource_unit_uuid;
DROP INDEX IF EXISTS idx_permissions_resource_repo_uuid;
DROP INDEX IF EXISTS idx_permissions_agent_unit_uuid;
DROP INDEX IF EXISTS idx_permissions_agent_user_uuid;
DROP INDEX IF EXISTS idx_units_nodes_edges_creator_uuid;
DROP INDEX IF EXISTS idx_units_nodes_edges_node_input_uuid;
DROP INDEX IF EXISTS idx_units_nodes_edges_node_output_uuid;
DROP INDEX IF EXISTS idx_units_nodes_unit_uuid;
DROP INDEX IF EXISTS idx_units_nodes_creator_uuid;
DROP INDEX IF EXISTS idx_units_repo_uuid;
DROP INDEX IF EXISTS idx_units_creator_uuid;
DROP INDEX IF EXISTS idx_repos_repository_registry_uuid;
DROP INDEX IF EXISTS idx_repos_creator_uuid;
DROP INDEX IF EXISTS idx_repository_registry_creator_uuid;
