-- Pepeunit reference schema: the ten tables of the Python backend in their final state
-- (alembic head 99db704045c6), with the same names, column types, nullability, server
-- defaults, constraint names and ON DELETE rules, so that data and the Python tooling carry
-- over (see /work/shared/reference/pepeunit-backend.md §1.1).
--
-- Conventions that mirror the reference:
-- * every string column is an unbounded `character varying` (SQLModel AutoString);
-- * timestamps are `timestamp without time zone` holding naive UTC;
-- * enums are stored as their string values (checks live in 002, not here);
-- * constraints are unnamed, so PostgreSQL gives them the same default names
--   (`<table>_pkey`, `<table>_<column>_key`, `<table>_<column>_fkey`) as the reference;
-- * every table carries the redundant non-unique index `ix_<table>_uuid` on its primary key.
--
-- Adopting an existing reference database: tables and indexes are created with IF NOT
-- EXISTS, so a database created by the Python backend at revision 99db704045c6 is taken over
-- unchanged. A database at any other revision is refused (below) rather than half-adopted.
-- This file is released: never edit it, add a new numbered migration instead.

DO $$
DECLARE
  other_revisions text;
BEGIN
  IF to_regclass('alembic_version') IS NOT NULL THEN
    -- dynamic SQL: the table may not exist, so this query must not be planned before the IF
    EXECUTE $sql$SELECT string_agg(version_num, ', ') FROM alembic_version WHERE version_num <> '99db704045c6'$sql$
      INTO other_revisions;
    IF other_revisions IS NOT NULL THEN
      RAISE EXCEPTION 'this database was created by the Python Pepeunit backend at alembic revision %, not at head 99db704045c6', other_revisions
        USING HINT = 'Run "alembic upgrade head" with the Python backend first, then start Pepeunit TS again.';
    END IF;
  ELSIF to_regclass('users') IS NOT NULL OR to_regclass('units') IS NOT NULL OR to_regclass('units_nodes') IS NOT NULL THEN
    RAISE EXCEPTION 'this database already holds Pepeunit-like tables (users/units/units_nodes) but no alembic_version table'
      USING HINT = 'Point Pepeunit TS at an empty database, or at a database migrated by the Python backend to alembic head 99db704045c6.';
  END IF;
END
$$;

CREATE TABLE IF NOT EXISTS users (
    uuid uuid NOT NULL,
    role character varying NOT NULL,
    status character varying NOT NULL,
    login character varying NOT NULL,
    telegram_chat_id character varying,
    hashed_password character varying NOT NULL,
    cipher_dynamic_salt character varying NOT NULL,
    create_datetime timestamp without time zone NOT NULL,
    grafana_org_name uuid DEFAULT gen_random_uuid() NOT NULL,
    grafana_org_id character varying,
    PRIMARY KEY (uuid),
    UNIQUE (login),
    UNIQUE (telegram_chat_id)
);
CREATE INDEX IF NOT EXISTS ix_users_uuid ON users (uuid);

CREATE TABLE IF NOT EXISTS repository_registry (
    uuid uuid NOT NULL,
    platform character varying NOT NULL,
    repository_url character varying NOT NULL,
    is_public_repository boolean NOT NULL,
    cipher_credentials_private_repository character varying,
    releases_data character varying,
    local_repository_size integer NOT NULL,
    sync_status character varying,
    sync_error character varying,
    sync_last_datetime timestamp without time zone,
    create_datetime timestamp without time zone NOT NULL,
    last_update_datetime timestamp without time zone NOT NULL,
    creator_uuid uuid,
    PRIMARY KEY (uuid),
    UNIQUE (repository_url),
    -- registries outlive their creator: the clone is shared by every Repo pointing at it
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS ix_repository_registry_uuid ON repository_registry (uuid);

CREATE TABLE IF NOT EXISTS repos (
    uuid uuid NOT NULL,
    visibility_level character varying NOT NULL,
    name character varying NOT NULL,
    create_datetime timestamp without time zone NOT NULL,
    default_branch character varying,
    is_auto_update_repo boolean NOT NULL,
    default_commit character varying,
    is_only_tag_update boolean NOT NULL,
    is_compilable_repo boolean DEFAULT false NOT NULL,
    last_update_datetime timestamp without time zone NOT NULL,
    creator_uuid uuid,
    repository_registry_uuid uuid NOT NULL,
    PRIMARY KEY (uuid),
    UNIQUE (name),
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE CASCADE,
    FOREIGN KEY (repository_registry_uuid) REFERENCES repository_registry (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_repos_uuid ON repos (uuid);

-- target_firmware_platform: the reference migration f7530b7880cc back-filled existing rows
-- with the literal string 'null'; we do not reproduce that quirk (no server default).
CREATE TABLE IF NOT EXISTS units (
    uuid uuid NOT NULL,
    visibility_level character varying NOT NULL,
    name character varying NOT NULL,
    create_datetime timestamp without time zone NOT NULL,
    last_update_datetime timestamp without time zone NOT NULL,
    is_auto_update_from_repo_unit boolean NOT NULL,
    target_firmware_platform character varying,
    repo_branch character varying,
    repo_commit character varying,
    unit_state_dict character varying,
    current_commit_version character varying,
    cipher_env_dict character varying,
    cipher_state_storage character varying,
    firmware_update_status character varying,
    firmware_update_error character varying,
    last_firmware_update_datetime timestamp without time zone,
    creator_uuid uuid,
    repo_uuid uuid,
    PRIMARY KEY (uuid),
    UNIQUE (name),
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE CASCADE,
    FOREIGN KEY (repo_uuid) REFERENCES repos (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_units_uuid ON units (uuid);

-- data_pipe_yml holds the validated DataPipe config as JSON text despite its name.
CREATE TABLE IF NOT EXISTS units_nodes (
    uuid uuid NOT NULL,
    type character varying NOT NULL,
    visibility_level character varying NOT NULL,
    is_rewritable_input boolean NOT NULL,
    max_connections integer DEFAULT 10 NOT NULL,
    topic_name character varying NOT NULL,
    create_datetime timestamp without time zone NOT NULL,
    state character varying,
    last_update_datetime timestamp without time zone DEFAULT '2025-01-25 00:00:00' NOT NULL,
    is_data_pipe_active boolean DEFAULT false NOT NULL,
    data_pipe_yml character varying,
    data_pipe_status character varying,
    data_pipe_error character varying,
    creator_uuid uuid,
    unit_uuid uuid,
    PRIMARY KEY (uuid),
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE CASCADE,
    FOREIGN KEY (unit_uuid) REFERENCES units (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_units_nodes_uuid ON units_nodes (uuid);

-- No uniqueness on (node_output_uuid, node_input_uuid): the reference enforces it in the
-- service layer, and adding it here could refuse adopted reference data.
CREATE TABLE IF NOT EXISTS units_nodes_edges (
    uuid uuid NOT NULL,
    node_output_uuid uuid,
    node_input_uuid uuid,
    creator_uuid uuid,
    PRIMARY KEY (uuid),
    FOREIGN KEY (node_output_uuid) REFERENCES units_nodes (uuid) ON DELETE CASCADE,
    FOREIGN KEY (node_input_uuid) REFERENCES units_nodes (uuid) ON DELETE CASCADE,
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_units_nodes_edges_uuid ON units_nodes_edges (uuid);

CREATE TABLE IF NOT EXISTS permissions (
    uuid uuid NOT NULL,
    agent_type character varying NOT NULL,
    agent_user_uuid uuid,
    agent_unit_uuid uuid,
    resource_type character varying NOT NULL,
    resource_repo_uuid uuid,
    resource_unit_uuid uuid,
    resource_unit_node_uuid uuid,
    PRIMARY KEY (uuid),
    FOREIGN KEY (agent_user_uuid) REFERENCES users (uuid) ON DELETE CASCADE,
    FOREIGN KEY (agent_unit_uuid) REFERENCES units (uuid) ON DELETE CASCADE,
    FOREIGN KEY (resource_repo_uuid) REFERENCES repos (uuid) ON DELETE CASCADE,
    FOREIGN KEY (resource_unit_uuid) REFERENCES units (uuid) ON DELETE CASCADE,
    FOREIGN KEY (resource_unit_node_uuid) REFERENCES units_nodes (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_permissions_uuid ON permissions (uuid);

CREATE TABLE IF NOT EXISTS dashboards (
    uuid uuid NOT NULL,
    grafana_uuid uuid NOT NULL,
    name character varying NOT NULL,
    dashboard_url character varying,
    inc_last_version integer,
    sync_status character varying,
    sync_error character varying,
    sync_last_datetime timestamp without time zone,
    create_datetime timestamp without time zone NOT NULL,
    creator_uuid uuid,
    PRIMARY KEY (uuid),
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_dashboards_uuid ON dashboards (uuid);

CREATE TABLE IF NOT EXISTS dashboard_panels (
    uuid uuid NOT NULL,
    type character varying NOT NULL,
    title character varying NOT NULL,
    create_datetime timestamp without time zone NOT NULL,
    creator_uuid uuid,
    dashboard_uuid uuid,
    PRIMARY KEY (uuid),
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE CASCADE,
    FOREIGN KEY (dashboard_uuid) REFERENCES dashboards (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_dashboard_panels_uuid ON dashboard_panels (uuid);

CREATE TABLE IF NOT EXISTS mtm_panels_unit_nodes (
    uuid uuid NOT NULL,
    is_last_data boolean NOT NULL,
    is_forced_to_json boolean DEFAULT false NOT NULL,
    create_datetime timestamp without time zone NOT NULL,
    creator_uuid uuid,
    unit_node_uuid uuid,
    dashboard_panels_uuid uuid,
    PRIMARY KEY (uuid),
    FOREIGN KEY (creator_uuid) REFERENCES users (uuid) ON DELETE CASCADE,
    FOREIGN KEY (unit_node_uuid) REFERENCES units_nodes (uuid) ON DELETE CASCADE,
    FOREIGN KEY (dashboard_panels_uuid) REFERENCES dashboard_panels (uuid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS ix_mtm_panels_unit_nodes_uuid ON mtm_panels_unit_nodes (uuid);

-- alembic's own bookkeeping table, exactly as alembic creates it, stamped at the reference
-- head. Python tooling pointed at this database (alembic current/upgrade, the reference
-- backend's entrypoint) then sees the schema as up to date instead of trying to re-create
-- every table. Our own migrations are tracked separately in pepeunit_schema_version.
CREATE TABLE IF NOT EXISTS alembic_version (
    version_num character varying(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version (version_num)
SELECT '99db704045c6'
WHERE NOT EXISTS (SELECT 1 FROM alembic_version);
