-- Lists are ordered newest first by default (reference `order_by_create_date` desc): with an index
-- on the order the first page is an index walk of `limit` rows instead of a sort of every visible
-- row (issue 11, REST speed).
CREATE INDEX IF NOT EXISTS idx_units_create_datetime ON units (create_datetime);
CREATE INDEX IF NOT EXISTS idx_units_nodes_create_datetime ON units_nodes (create_datetime);
CREATE INDEX IF NOT EXISTS idx_repos_create_datetime ON repos (create_datetime);
CREATE INDEX IF NOT EXISTS idx_users_create_datetime ON users (create_datetime);
CREATE INDEX IF NOT EXISTS idx_repository_registry_create_datetime ON repository_registry (create_datetime);
CREATE INDEX IF NOT EXISTS idx_units_nodes_unit_uuid_type ON units_nodes (unit_uuid, type);
