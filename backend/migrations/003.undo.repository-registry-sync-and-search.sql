-- Undo of 003 (development and tests). The data migration of pre-registry Repo rows is not
-- reversed: the registry entries it created stay, and the old columns are not restored.
DROP INDEX IF EXISTS idx_repository_registry_search_text;
DROP INDEX IF EXISTS idx_repository_registry_public_create;

ALTER TABLE repos
    DROP CONSTRAINT IF EXISTS ck_repos_sync_status,
    DROP COLUMN IF EXISTS sync_status,
    DROP COLUMN IF EXISTS sync_error,
    DROP COLUMN IF EXISTS sync_last_datetime,
    DROP COLUMN IF EXISTS sync_finished_datetime,
    DROP COLUMN IF EXISTS sync_progress,
    DROP COLUMN IF EXISTS local_repository_size,
    DROP COLUMN IF EXISTS legacy_cipher_credentials;

ALTER TABLE repository_registry
    DROP COLUMN IF EXISTS sync_finished_datetime,
    DROP COLUMN IF EXISTS sync_progress,
    DROP COLUMN IF EXISTS default_branch,
    DROP COLUMN IF EXISTS branches,
    DROP COLUMN IF EXISTS head_commit,
    DROP COLUMN IF EXISTS title,
    DROP COLUMN IF EXISTS description,
    DROP COLUMN IF EXISTS readme_heading,
    DROP COLUMN IF EXISTS readme_paragraph,
    DROP COLUMN IF EXISTS toml_metadata,
    DROP COLUMN IF EXISTS search_text;
