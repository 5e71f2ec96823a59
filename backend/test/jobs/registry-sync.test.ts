/**
 * The periodic registry sync job (backend/src/jobs/registry-sync.ts): nothing scheduled when
 * the interval is 0, `runOnce` syncs every entry and private copy as the Backend agent with a
 * log line per entry, replicas are elected with an advisory lock, and the start-up tasks heal
 * stuck rows, clone missing copies and adopt migrated credentials.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { startRegistrySyncJob } from '../../src/jobs/registry-sync.js';
import { SYNC_ALL_LOCK_KEY } from '../../src/registry/sync-service.js';
import { readCredentialMap } from '../../src/registry/credentials.js';
import { createFixtureRepository, makeTempDir, removeDir, type FixtureRepository } from '../git/helpers.js';
import { bufferLogger, startPlatformStub, startRegistryBackend, type PlatformStub, type RegistryBackend, type TestUser } from './registry-test-kit.js';
import { elapse } from '@pepeunit/tests/wait';

describe('registry sync job', () => {
  let root: string;
  let publicRepo: FixtureRepository;
  let privateRepo: FixtureRepository;
  let orphanRepo: FixtureRepository;
  let stub: PlatformStub;
  let t: RegistryBackend;
  let logs: () => string;
  let alice: TestUser;
  let bob: TestUser;
  const uuids: Record<string, string> = {};

  const lastSync = async (uuid: string): Promise<Date | null> =>
    (await t.backend.deps.pg.query('SELECT sync_last_datetime FROM repository_registry WHERE uuid = $1', [uuid])).rows[0].sync_last_datetime;

  before(async () => {
    root = await makeTempDir('pu-job-');
    publicRepo = await createFixtureRepository(root, 'public');
    privateRepo = await createFixtureRepository(join(root, 'team'), 'private');
    orphanRepo = await createFixtureRepository(join(root, 'team'), 'orphan');
    stub = await startPlatformStub();
    stub.add(publicRepo.url, { sizeBytes: 1024 });
    stub.add(privateRepo.url, { sizeBytes: 1024, auth: { username: 'alice', patToken: 'ghp_JobToken' } });
    stub.add(orphanRepo.url, { sizeBytes: 1024, auth: { username: 'bob', patToken: 'ghp_BobToken' } });
    const captured = bufferLogger('info');
    logs = captured.text;
    t = await startRegistryBackend('job', { PU_REGISTRY_SYNC_INTERVAL_HOURS: '0' }, captured.logger);
    t.backend.app.registrySync.platformApi.baseUrl = stub.url;
    await t.backend.registrySync.startup;
    alice = await t.user('alice_job');
    bob = await t.user('bob_job');
    const add = async (name: string, user: TestUser, body: Record<string, unknown>) => {
      const res = await t.call('POST', '/repository_registry', { token: user.token, body });
      assert.equal(res.status, 201, res.raw);
      uuids[name] = res.body.uuid;
    };
    await add('public', alice, { platform: 'Github', repository_url: publicRepo.url, is_public_repository: true });
    await add('private', alice, { platform: 'Github', repository_url: privateRepo.url, is_public_repository: false, credentials: { username: 'alice', pat_token: 'ghp_JobToken' } });
    await add('orphan', bob, { platform: 'Github', repository_url: orphanRepo.url, is_public_repository: false, credentials: { username: 'bob', pat_token: 'ghp_BobToken' } });
    const repo = await t.call('POST', '/repos', {
      token: alice.token,
      body: { repository_registry_uuid: uuids.private, default_branch: 'main', visibility_level: 'Private', name: 'alice_private' },
    });
    assert.equal(repo.status, 201, repo.raw);
    assert.equal(repo.body.sync_status, 'Updated');
    uuids.repo = repo.body.uuid;
    // bob's token stops working: his entry is the only one of "orphan"
    await t.backend.deps.pg.query('UPDATE repository_registry SET cipher_credentials_private_repository = $2 WHERE uuid = $1', [
      uuids.orphan,
      t.backend.app.cipher.encrypt(JSON.stringify({ [bob.uuid]: { credentials: { username: 'bob', pat_token: 'ghp_BobToken' }, status: 'Error' } })),
    ]);
  });
  after(async () => {
    await t?.close();
    await stub?.close();
    await removeDir(root);
  });

  test('interval 0: no timer at all, and nothing is synced by itself', async () => {
    assert.equal(t.backend.registrySync.scheduled, false);
    assert.equal(t.backend.registrySync.nextRunAt, null);
    assert.equal(t.backend.registrySync.intervalMs, 0);
    const before = await lastSync(uuids.public!);
    await elapse(300, 'time in which a periodic sync with interval 0 would have started');
    assert.deepEqual(await lastSync(uuids.public!), before);
    assert.match(logs(), /periodic registry sync disabled/);

    const job = startRegistrySyncJob(t.backend.app, { intervalHours: 0, startupTasks: false });
    assert.equal(job.scheduled, false);
    await job.stop();
  });

  test('a positive interval schedules one timer; stop() removes it', async () => {
    const job = startRegistrySyncJob(t.backend.app, { intervalHours: 2, startupTasks: false });
    assert.equal(job.scheduled, true);
    assert.equal(job.intervalMs, 2 * 3_600_000);
    const inTwoHours = Date.now() + 2 * 3_600_000;
    assert.ok(Math.abs(job.nextRunAt!.getTime() - inTwoHours) < 5000);
    // longer than a Node timer can wait (24.8 days): still scheduled, by chained timers
    const yearly = startRegistrySyncJob(t.backend.app, { intervalHours: 8760, startupTasks: false });
    assert.equal(yearly.scheduled, true);
    await job.stop();
    await yearly.stop();
    assert.equal(job.scheduled, false);
    assert.equal(job.nextRunAt, null);
  });

  test('runOnce syncs every entry and private copy as the Backend agent, one log line per entry', async () => {
    const before = await lastSync(uuids.public!);
    const job = startRegistrySyncJob(t.backend.app, { intervalHours: 0, startupTasks: false });
    const summary = await job.runOnce();
    await job.stop();
    assert.equal(summary.ran, true);
    assert.deepEqual(summary.registries, { total: 3, updated: 2, errors: 1, skipped: 0 });
    assert.deepEqual(summary.privateRepos, { total: 1, updated: 1, errors: 0, skipped: 0 });
    assert.ok((await lastSync(uuids.public!))! > before!);

    const { rows } = await t.backend.deps.pg.query('SELECT uuid, sync_status, sync_error FROM repository_registry');
    const byUuid = new Map(rows.map((row) => [row.uuid, row]));
    assert.equal(byUuid.get(uuids.private)!.sync_status, 'Updated', 'private entry synced with the first Valid credentials');
    assert.equal(byUuid.get(uuids.orphan)!.sync_status, 'Error');
    assert.equal(byUuid.get(uuids.orphan)!.sync_error, '422: 13: Repository Registry Validation Error: No valid credentials in credential list');
    const repo = await t.backend.deps.pg.query('SELECT sync_status FROM repos WHERE uuid = $1', [uuids.repo]);
    assert.equal(repo.rows[0].sync_status, 'Updated');

    const text = logs();
    for (const uuid of [uuids.public, uuids.private, uuids.orphan]) {
      assert.equal(text.split('\n').filter((line) => line.includes('"msg":"registry entry synced"') && line.includes(uuid!)).length, 1, `one line for ${uuid}`);
    }
    assert.match(text, /"msg":"private repo copy synced"/);
    assert.match(text, /"msg":"registry sync of everything finished"/);
  });

  test('only one replica runs it: while another holds the election lock, runOnce does nothing', async () => {
    const other = new pg.Client({ connectionString: t.db.pgUrl });
    await other.connect();
    try {
      await other.query('SELECT pg_advisory_lock($1, $2)', [...SYNC_ALL_LOCK_KEY]);
      const before = await lastSync(uuids.public!);
      const job = startRegistrySyncJob(t.backend.app, { intervalHours: 0, startupTasks: false });
      const summary = await job.runOnce();
      await job.stop();
      assert.equal(summary.ran, false);
      assert.equal(summary.reason, 'another process is running it');
      assert.deepEqual(await lastSync(uuids.public!), before);
      const admin = await t.call('POST', '/repository_registry/sync_all', { token: (await t.user('admin_late')).token });
      assert.equal(admin.status, 403, 'not the first user, so not an admin');
    } finally {
      await other.end();
    }
  });

  test('start-up tasks: stuck rows become Error, missing copies are cloned, migrated credentials are adopted', async () => {
    // a stuck row (its process died), a clone lost from disk, credentials left by migration 003
    await t.backend.deps.pg.query(`UPDATE repository_registry SET sync_status = 'Processing' WHERE uuid = $1`, [uuids.private]);
    await rm(join(t.saveRepoPath, uuids.public!), { recursive: true, force: true });
    await t.backend.deps.pg.query('UPDATE repos SET legacy_cipher_credentials = $2 WHERE uuid = $1', [
      uuids.repo,
      t.backend.app.cipher.encrypt(JSON.stringify({ username: 'alice-legacy', pat_token: 'ghp_Legacy' })),
    ]);
    await t.backend.deps.pg.query(`UPDATE repository_registry SET cipher_credentials_private_repository = NULL WHERE uuid = $1`, [uuids.private]);

    const job = startRegistrySyncJob(t.backend.app, { intervalHours: 0 });
    await job.startup;
    await job.stop();
    const stuck = await t.backend.deps.pg.query('SELECT sync_status, sync_error FROM repository_registry WHERE uuid = $1', [uuids.private]);
    assert.equal(stuck.rows[0].sync_status, 'Error');
    assert.match(stuck.rows[0].sync_error, /Sync was interrupted/);
    assert.ok(await t.backend.app.gitStore.exists(uuids.public!), 'missing clone cloned again');
    const adopted = await t.backend.deps.pg.query(
      'SELECT rr.cipher_credentials_private_repository AS c, r.legacy_cipher_credentials AS legacy FROM repos r JOIN repository_registry rr ON rr.uuid = r.repository_registry_uuid WHERE r.uuid = $1',
      [uuids.repo],
    );
    assert.equal(adopted.rows[0].legacy, null);
    const map = readCredentialMap(t.backend.app.cipher, adopted.rows[0].c);
    assert.deepEqual(map[alice.uuid], { credentials: { username: 'alice-legacy', pat_token: 'ghp_Legacy' }, status: 'NotVerified' });
  });
});
