/**
 * Migration 003's data migration: a database whose repos still hold the pre-registry columns
 * (repo_url, platform, is_public_repository, releases_data, cipher_credentials_private_repository)
 * gets one registry entry per normalised URL, every Repo points at it, and the old columns go.
 * On a fresh database the same migration is a no-op for data.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { migratePostgres } from '../../src/db/migrate.js';
import { dropFreshDatabases, freshDatabase, withDb } from '../pg-databases.js';

after(async () => {
  await dropFreshDatabases();
});

describe('migration 003: pre-registry Repo rows', () => {
  test('two Repos with the same URL become one registry entry; private credentials are kept for the backend', async () => {
    const url = await freshDatabase('pu_t_regmig');
    await migratePostgres(url, { targetVersion: 2 });
    await withDb(url, async (client) => {
      // the old reference layout: the repository lived on the Repo
      await client.query(`ALTER TABLE repos ALTER COLUMN repository_registry_uuid DROP NOT NULL;
        ALTER TABLE repos ADD COLUMN repo_url varchar, ADD COLUMN platform varchar, ADD COLUMN is_public_repository boolean,
          ADD COLUMN releases_data varchar, ADD COLUMN cipher_credentials_private_repository varchar, ADD COLUMN update_frequency_in_seconds integer`);
      const { rows } = await client.query(`INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime)
        VALUES (gen_random_uuid(), 'User', 'Verified', 'old_user', 'h', 's', now()) RETURNING uuid`);
      const user = rows[0].uuid;
      const insert = (name: string, repoUrl: string, isPublic: boolean, credentials: string | null, releases: string | null) =>
        client.query(
          `INSERT INTO repos (uuid, visibility_level, name, create_datetime, is_auto_update_repo, is_only_tag_update, last_update_datetime,
                  creator_uuid, repo_url, platform, is_public_repository, releases_data, cipher_credentials_private_repository)
           VALUES (gen_random_uuid(), 'Public', $1, now(), true, true, now(), $2, $3, 'Gitlab', $4, $5, $6)`,
          [name, user, repoUrl, isPublic, releases, credentials],
        );
      await insert('first_repo', 'https://GitLab.example.org/units/fan.git', true, null, '{"1.0": [["esp32", "https://x/esp32"]]}');
      await insert('second_repo', 'https://gitlab.example.org/units/fan/', true, null, null);
      await insert('secret_repo', 'https://gitlab.example.org/units/secret.git', false, 'nonce.ciphertext', null);
    });

    const result = await migratePostgres(url);
    assert.ok(result.appliedVersions.includes(3));
    await withDb(url, async (client) => {
      const registries = await client.query('SELECT uuid, repository_url, platform, is_public_repository, releases_data, search_text FROM repository_registry ORDER BY repository_url');
      assert.deepEqual(
        registries.rows.map((r) => [r.repository_url, r.platform, r.is_public_repository]),
        [
          ['https://gitlab.example.org/units/fan.git', 'Gitlab', true],
          ['https://gitlab.example.org/units/secret.git', 'Gitlab', false],
        ],
      );
      assert.equal(registries.rows[0].releases_data, '{"1.0": [["esp32", "https://x/esp32"]]}');
      assert.equal(registries.rows[0].search_text, 'https://gitlab.example.org/units/fan.git');
      const repos = await client.query('SELECT name, repository_registry_uuid, legacy_cipher_credentials FROM repos ORDER BY name');
      const fan = registries.rows[0].uuid;
      assert.deepEqual(
        repos.rows.map((r) => [r.name, r.repository_registry_uuid, r.legacy_cipher_credentials]),
        [
          ['first_repo', fan, null],
          ['second_repo', fan, null],
          ['secret_repo', registries.rows[1].uuid, 'nonce.ciphertext'],
        ],
      );
      const oldColumns = await client.query(
        `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'repos'
          AND column_name IN ('repo_url', 'platform', 'is_public_repository', 'releases_data', 'cipher_credentials_private_repository', 'update_frequency_in_seconds')`,
      );
      assert.deepEqual(oldColumns.rows, []);
      const nullable = await client.query(
        `SELECT is_nullable FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'repos' AND column_name = 'repository_registry_uuid'`,
      );
      assert.equal(nullable.rows[0].is_nullable, 'NO', 'back to the reference NOT NULL');
    });
  });

  test('a fresh database gets the new columns and no data; undo and redo work', async () => {
    const url = await freshDatabase('pu_t_regmig');
    await migratePostgres(url);
    await withDb(url, async (client) => {
      const count = await client.query('SELECT count(*)::int AS n FROM repository_registry');
      assert.equal(count.rows[0].n, 0);
      const columns = await client.query(
        `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()
          AND (table_name, column_name) IN (('repository_registry', 'search_text'), ('repository_registry', 'sync_progress'), ('repos', 'sync_status'), ('repos', 'legacy_cipher_credentials'))`,
      );
      assert.equal(columns.rowCount, 4);
      const index = await client.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'idx_repository_registry_search_text'`);
      assert.equal(index.rowCount, 1, 'trigram index (pg_trgm is available on this server)');
      const registry = await client.query(`INSERT INTO repository_registry (uuid, platform, repository_url, is_public_repository, local_repository_size, create_datetime, last_update_datetime)
        VALUES (gen_random_uuid(), 'Github', 'https://github.com/o/r.git', true, 0, now(), now()) RETURNING uuid`);
      const refused = await client
        .query(
          `INSERT INTO repos (uuid, visibility_level, name, create_datetime, is_auto_update_repo, is_only_tag_update, last_update_datetime, repository_registry_uuid, sync_status)
           VALUES (gen_random_uuid(), 'Public', 'x_repo', now(), true, true, now(), $1, 'Weird')`,
          [registry.rows[0].uuid],
        )
        .then(() => 'accepted', (error: { code?: string; constraint?: string }) => `${error.code} ${error.constraint}`);
      assert.equal(refused, '23514 ck_repos_sync_status');
      await client.query('DELETE FROM repository_registry');
    });
    const down = await migratePostgres(url, { targetVersion: 2 });
    assert.deepEqual(down.appliedVersions.includes(3), true);
    await withDb(url, async (client) => {
      const columns = await client.query(
        `SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'repository_registry' AND column_name = 'search_text'`,
      );
      assert.equal(columns.rowCount, 0);
    });
    const up = await migratePostgres(url);
    assert.ok(up.appliedVersions.includes(3));
  });
});
