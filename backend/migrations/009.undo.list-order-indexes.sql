DROP INDEX IF EXISTS idx_units_create_datetime;
DROP INDEX IF EXISTS idx_units_nodes_create_datetime;
DROP INDEX IF EXISTS idx_repos_create_datetime;
DROP INDEX IF EXISTS idx_users_create_datetime;
DROP INDEX IF EXISTS idx_repository_registry_create_datetime;
DROP INDEX IF EXISTS idx_units_nodes_unit_uuid_type;
