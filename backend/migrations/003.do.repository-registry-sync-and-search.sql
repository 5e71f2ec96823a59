-- Repository registry (issue 4): sync progress and metadata, search, per-Repo copies of
-- private repositories, and the data migration of pre-registry Repo rows.
-- Only columns, constraints and indexes are ADDED to reference tables; nothing of 001 changes
-- except on a database that still holds the pre-registry Repo columns (block 4).
-- See docs/REGISTRY.md. This file is released: never edit it, add a new number.

-- 1. Registry entries: what a sync learns, besides the reference columns.
--    sync_last_datetime keeps its reference meaning (start of the last sync);
--    sync_finished_datetime is when it ended (Updated or Error).
ALTER TABLE repository_registry
    ADD COLUMN sync_finished_datetime timestamp without time zone,
    -- latest progress of a running sync {stage, percent, message, updated_at}; NULL when idle
    ADD COLUMN sync_progress jsonb,
    ADD COLUMN default_branch character varying,
    -- branch names at the last successful sync (RegistryRead.branches without a git call per row)
    ADD COLUMN branches jsonb,
    ADD COLUMN head_commit character varying,
    -- search metadata read from the default branch at sync time (README.md, pepeunit.toml)
    ADD COLUMN title character varying,
    ADD COLUMN description character varying,
    ADD COLUMN readme_heading character varying,
    ADD COLUMN readme_paragraph character varying,
    ADD COLUMN toml_metadata jsonb,
    -- lower-case text the search endpoint matches (URL + metadata), maintained by the backend
    ADD COLUMN search_text text;

UPDATE repository_registry SET search_text = lower(repository_url) WHERE search_text IS NULL;

CREATE INDEX idx_repository_registry_public_create ON repository_registry (is_public_repository, create_datetime DESC);

-- 2. Private repositories keep their own copy per Repo (storage key private-<repo uuid>);
--    these columns are that copy's badge. Public Repos leave them NULL and show the registry's.
ALTER TABLE repos
    ADD COLUMN sync_status character varying,
    ADD COLUMN sync_error character varying,
    ADD COLUMN sync_last_datetime timestamp without time zone,
    ADD COLUMN sync_finished_datetime timestamp without time zone,
    ADD COLUMN sync_progress jsonb,
    ADD COLUMN local_repository_size integer DEFAULT 0 NOT NULL,
    -- encrypted credentials of a migrated pre-registry private Repo (block 4), moved into the
    -- registry's per-user credential map by the backend at start-up, then cleared
    ADD COLUMN legacy_cipher_credentials character varying,
    ADD CONSTRAINT ck_repos_sync_status CHECK (sync_status IN ('Updated', 'Processing', 'Error'));

-- 3. Substring search over search_text: a trigram index when pg_trgm can be installed
--    (a trusted extension since PostgreSQL 13, so the database owner may create it);
--    without it the search still works by a sequential scan.
DO $$
BEGIN
  BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): registry search runs without a trigram index', SQLERRM;
  END;
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    BEGIN
      EXECUTE 'CREATE INDEX idx_repository_registry_search_text ON repository_registry USING gin (search_text gin_trgm_ops)';
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'trigram index not created (%): registry search runs without it', SQLERRM;
    END;
  END IF;
END
$$;

-- 4. Data migration: a database whose repos still carry the pre-registry columns (repo_url,
--    platform, is_public_repository, releases_data, cipher_credentials_private_repository)
--    gets one registry entry per normalised URL (deduplicated), every Repo points at it, and the
--    old columns are dropped. No-op on a fresh database or one at the reference head.
--    The URL normalisation matches the backend's (lower-case scheme and host, no userinfo,
--    no trailing slash, `.git` suffix).
CREATE FUNCTION pg_temp.pu_normalize_repository_url(url text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE WHEN parts.prefix IS NULL THEN nullif(btrim(url), '')
              WHEN parts.path ~ '\.git$' THEN parts.prefix || parts.path
              ELSE parts.prefix || parts.path || '.git' END
  FROM (
    SELECT lower(regexp_replace(substring(btrim(url) FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/]*'), '//[^@/]*@', '//')) AS prefix,
           rtrim(coalesce(substring(btrim(url) FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/]*(/.*)$'), ''), '/') AS path
  ) AS parts
$fn$;

DO $$
DECLARE
  has_column record;
  platform_expr text;
  public_expr text;
  releases_expr text;
  orphans bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = 'repos' AND column_name = 'repo_url') THEN
    RETURN;
  END IF;
  RAISE NOTICE 'repos holds pre-registry columns: moving them into repository_registry';

  SELECT bool_or(column_name = 'platform') AS platform,
         bool_or(column_name = 'is_public_repository') AS is_public,
         bool_or(column_name = 'releases_data') AS releases,
         bool_or(column_name = 'cipher_credentials_private_repository') AS credentials,
         bool_or(column_name = 'repository_registry_uuid') AS registry
    INTO has_column
    FROM information_schema.columns
   WHERE table_schema = current_schema() AND table_name = 'repos';

  IF NOT has_column.registry THEN
    ALTER TABLE repos ADD COLUMN repository_registry_uuid uuid REFERENCES repository_registry (uuid) ON DELETE CASCADE;
  END IF;

  platform_expr := CASE WHEN has_column.platform
    THEN $e$coalesce(r.platform, CASE WHEN r.repo_url ILIKE '%github%' THEN 'Github' ELSE 'Gitlab' END)$e$
    ELSE $e$CASE WHEN r.repo_url ILIKE '%github%' THEN 'Github' ELSE 'Gitlab' END$e$ END;
  public_expr := CASE WHEN has_column.is_public THEN 'coalesce(r.is_public_repository, true)' ELSE 'true' END;
  releases_expr := CASE WHEN has_column.releases THEN 'r.releases_data' ELSE 'NULL::varchar' END;

  -- one entry per URL; a URL that any Repo marked public becomes a public entry
  EXECUTE format($sql$
    INSERT INTO repository_registry (uuid, platform, repository_url, is_public_repository, releases_data,
        local_repository_size, create_datetime, last_update_datetime, creator_uuid, search_text)
    SELECT DISTINCT ON (s.url) gen_random_uuid(), s.platform, s.url, s.is_public, s.releases, 0,
           s.create_datetime, (now() AT TIME ZONE 'utc'), s.creator_uuid, lower(s.url)
      FROM (SELECT pg_temp.pu_normalize_repository_url(r.repo_url) AS url, %s AS platform, %s AS is_public,
                   %s AS releases, r.create_datetime, r.creator_uuid
              FROM repos r
             WHERE r.repository_registry_uuid IS NULL AND nullif(btrim(r.repo_url), '') IS NOT NULL) AS s
     ORDER BY s.url, s.is_public DESC, s.create_datetime
    ON CONFLICT (repository_url) DO NOTHING
  $sql$, platform_expr, public_expr, releases_expr);

  EXECUTE $sql$
    UPDATE repos r SET repository_registry_uuid = rr.uuid
      FROM repository_registry rr
     WHERE r.repository_registry_uuid IS NULL
       AND lower(rr.repository_url) = lower(pg_temp.pu_normalize_repository_url(r.repo_url))
  $sql$;

  IF has_column.credentials THEN
    EXECUTE format($sql$
      UPDATE repos r SET legacy_cipher_credentials = r.cipher_credentials_private_repository
       WHERE r.cipher_credentials_private_repository IS NOT NULL AND NOT %s
    $sql$, public_expr);
  END IF;

  SELECT count(*) INTO orphans FROM repos WHERE repository_registry_uuid IS NULL;
  IF orphans > 0 THEN
    RAISE EXCEPTION '% repos have neither a repo_url nor a repository_registry_uuid', orphans
      USING HINT = 'Fix or delete those rows (SELECT uuid, name FROM repos WHERE repository_registry_uuid IS NULL), then start again.';
  END IF;
  ALTER TABLE repos ALTER COLUMN repository_registry_uuid SET NOT NULL;

  ALTER TABLE repos
    DROP COLUMN IF EXISTS repo_url,
    DROP COLUMN IF EXISTS platform,
    DROP COLUMN IF EXISTS is_public_repository,
    DROP COLUMN IF EXISTS releases_data,
    DROP COLUMN IF EXISTS cipher_credentials_private_repository,
    DROP COLUMN IF EXISTS update_frequency_in_seconds;
END
$$;

DROP FUNCTION pg_temp.pu_normalize_repository_url(text);
