-- Reverts 001: drops the reference tables (children first) and the alembic stamp.
-- Destroys all platform data; only meant for development and tests.
DROP TABLE IF EXISTS mtm_panels_unit_nodes;
DROP TABLE IF EXISTS dashboard_panels;
DROP TABLE IF EXISTS dashboards;
DROP TABLE IF EXISTS permissions;
DROP TABLE IF EXISTS units_nodes_edges;
DROP TABLE IF EXISTS units_nodes;
DROP TABLE IF EXISTS units;
DROP TABLE IF EXISTS repos;
DROP TABLE IF EXISTS repository_registry;
DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS alembic_version;
