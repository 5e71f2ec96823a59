/**
 * Repo routes against the real app (pepeunit-backend.md §5.4, §6.8, §6.9): creation rules,
 * updates and target versions, available platforms, versions, lists with visibility, the
 * firmware-update hooks, delete rules, badge fields.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createFixtureRepository, makeTempDir, removeDir, type FixtureRepository } from '../git/helpers.js';
import { startPlatformStub, startRegistryBackend, type PlatformStub, type RegistryBackend, type TestUser } from '../jobs/registry-test-kit.js';
import { waitFor } from '@pepeunit/tests/wait';
import type { RepoRow } from '../../src/registry/repo-service.js';

describe('repos', () => {
  let root: string;
  let fixture: FixtureRepository;
  let stub: PlatformStub;
  let t: RegistryBackend;
  let admin: TestUser;
  let alice: TestUser;
  let bob: TestUser;
  let registryUuid: string;
  const repos = {} as Record<"alice" | "bob" | "secret" | "internal", string>;

  const create = (user: TestUser, name: string, extra: Record<string, unknown> = {}) =>
    t.call('POST', '/repos', {
      token: user.token,
      body: { repository_registry_uuid: registryUuid, default_branch: 'main', visibility_level: 'Public', name, ...extra },
    });

  async function addUnit(repoUuid: string, creator: string, visibility: string, version: string | null): Promise<string> {
    const uuid = randomUUID();
    await t.backend.deps.pg.query(
      `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit,
              current_commit_version, creator_uuid, repo_uuid)
       VALUES ($1, $2, $3, now(), now(), true, $4, $5, $6)`,
      [uuid, visibility, `unit_${uuid.slice(0, 8)}`, version, creator, repoUuid],
    );
    return uuid;
  }

  before(async () => {
    root = await makeTempDir('pu-repos-');
    fixture = await createFixtureRepository(root, 'unit');
    stub = await startPlatformStub();
    stub.add(fixture.url, {
      sizeBytes: 1024,
      releases: {
        '0.0.10': [['Universal', 'https://example.org/0.0.10/universal.bin'], ['esp32', 'https://example.org/0.0.10/esp32.bin']],
        'v0.0.1': [['Universal', 'https://example.org/0.0.1/universal.bin']],
      },
    });
    t = await startRegistryBackend('repos');
    t.backend.app.registrySync.platformApi.baseUrl = stub.url;
    admin = await t.user('admin_repo');
    alice = await t.user('alice_repo');
    bob = await t.user('bob_repo');
    const registry = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Github', repository_url: fixture.url, is_public_repository: true },
    });
    assert.equal(registry.body.sync_status, 'Updated', registry.raw);
    registryUuid = registry.body.uuid;
  });
  after(async () => {
    await t?.close();
    await stub?.close();
    await removeDir(root);
  });

  test('create: 201 with the reference defaults and the badge of the registry; User->Repo permission granted', async () => {
    const res = await create(alice, 'alice_unit', { is_compilable_repo: false });
    assert.equal(res.status, 201, res.raw);
    repos.alice = res.body.uuid;
    assert.equal(res.body.is_auto_update_repo, true, 'reference: always auto-updated on creation');
    assert.equal(res.body.is_only_tag_update, true, 'reference: always tag-only on creation');
    assert.equal(res.body.default_branch, 'main');
    assert.equal(res.body.creator_uuid, alice.uuid);
    assert.equal(res.body.is_public_repository, true);
    assert.equal(res.body.sync_status, 'Updated', 'badge from the registry entry');
    const permission = await t.backend.deps.pg.query('SELECT 1 FROM permissions WHERE agent_user_uuid = $1 AND resource_repo_uuid = $2', [alice.uuid, repos.alice]);
    assert.equal(permission.rowCount, 1);
  });

  test('create: duplicate name and bad names are RepoError; unknown branch is GitRepoError; anonymous 403', async () => {
    const duplicate = await create(bob, 'alice_unit');
    assert.equal(duplicate.status, 422);
    assert.equal(duplicate.body.detail, '422: 6: Repo Validation Error: Name is not unique');
    const badName = await create(bob, 'x y');
    assert.match(badName.body.detail, /^422: 6: Repo Validation Error: Name is not correct/);
    const branch = await create(bob, 'bob_unit', { default_branch: 'nope' });
    assert.equal(branch.status, 422);
    assert.equal(branch.body.detail, "422: 5: Git Repo Validation Error: Branch nope not found, available: ['dev', 'main']");
    const anonymous = await t.call('POST', '/repos', { body: { repository_registry_uuid: registryUuid, default_branch: 'main', visibility_level: 'Public', name: 'anon_unit' } });
    assert.equal(anonymous.status, 403);
    const unknownRegistry = await t.call('POST', '/repos', {
      token: bob.token,
      body: { repository_registry_uuid: randomUUID(), default_branch: 'main', visibility_level: 'Public', name: 'bob_unit' },
    });
    assert.equal(unknownRegistry.status, 422);
    const { rows } = await t.backend.deps.pg.query('SELECT count(*)::int AS n FROM repos');
    assert.equal(rows[0].n, 1, 'nothing was created');
  });

  test('target versions: tag-only follows the newest tag, auto follows the newest commit, manual the pinned commit', async () => {
    const tagOnly = await t.call('GET', `/repos/target_version/${repos.alice}`, { token: alice.token });
    assert.deepEqual(tagOnly.body, { commit: fixture.main.c2, tag: '0.0.10' });

    const latest = await t.call('PATCH', `/repos/${repos.alice}`, { token: alice.token, body: { is_only_tag_update: false } });
    assert.equal(latest.status, 200, latest.raw);
    assert.deepEqual((await t.call('GET', `/repos/target_version/${repos.alice}`, { token: alice.token })).body, { commit: fixture.main.c3, tag: null });

    const updaterCalls: string[] = [];
    t.backend.app.repos.setUnitsFirmwareUpdater(async (repo: RepoRow, context) => {
      updaterCalls.push(`${repo.name}:${context.reason}`);
    });
    const manual = await t.call('PATCH', `/repos/${repos.alice}`, { token: alice.token, body: { is_auto_update_repo: false, default_commit: fixture.main.c1 } });
    assert.equal(manual.status, 200, manual.raw);
    assert.equal(manual.body.default_commit, fixture.main.c1);
    assert.deepEqual((await t.call('GET', `/repos/target_version/${repos.alice}`, { token: alice.token })).body, { commit: fixture.main.c1, tag: 'v0.0.1' });
    assert.deepEqual(updaterCalls, ['alice_unit:repo pinned to a commit'], 'a Repo pinned to a commit updates its Units');

    const devCommit = await t.call('PATCH', `/repos/${repos.alice}`, { token: alice.token, body: { default_commit: fixture.dev.d1 } });
    assert.equal(devCommit.status, 422);
    assert.equal(devCommit.body.detail, `422: 5: Git Repo Validation Error: Commit ${fixture.dev.d1} not in branch main`);
    const devBranch = await t.call('PATCH', `/repos/${repos.alice}`, { token: alice.token, body: { default_branch: 'dev', default_commit: fixture.dev.d1 } });
    assert.equal(devBranch.status, 200, devBranch.raw);
    const unknownBranch = await t.call('PATCH', `/repos/${repos.alice}`, { token: alice.token, body: { default_branch: 'gone' } });
    assert.equal(unknownBranch.status, 422);
    assert.match(unknownBranch.body.detail, /^422: 5: Git Repo Validation Error: Branch gone not found/);

    const compiledLoose = await t.call('PATCH', `/repos/${repos.alice}`, {
      token: alice.token,
      body: { default_branch: 'main', is_auto_update_repo: true, is_compilable_repo: true, is_only_tag_update: false },
    });
    assert.equal(compiledLoose.status, 422);
    assert.equal(compiledLoose.body.detail, '422: 6: Repo Validation Error: Compiled repositories use only tags when updating automatically');
    const compiled = await t.call('PATCH', `/repos/${repos.alice}`, {
      token: alice.token,
      body: { default_branch: 'main', is_auto_update_repo: true, is_compilable_repo: true, is_only_tag_update: true },
    });
    assert.equal(compiled.status, 200, compiled.raw);
    const notCreator = await t.call('PATCH', `/repos/${repos.alice}`, { token: bob.token, body: { name: 'stolen_unit' } });
    assert.equal(notCreator.status, 403);
  });

  test('manual Repos need a branch and a commit; a compiled manual Repo needs a tagged commit', async () => {
    const res = await create(bob, 'bob_unit');
    assert.equal(res.status, 201, res.raw);
    repos.bob = res.body.uuid;
    const missing = await t.call('PATCH', `/repos/${repos.bob}`, { token: bob.token, body: { is_auto_update_repo: false } });
    assert.equal(missing.status, 422);
    assert.equal(missing.body.detail, '422: 6: Repo Validation Error: Repo updated manually requires branch and commit to be filled out');
    const untagged = await t.call('PATCH', `/repos/${repos.bob}`, {
      token: bob.token,
      body: { is_auto_update_repo: false, default_commit: fixture.main.c3, is_compilable_repo: true },
    });
    assert.equal(untagged.status, 422);
    assert.equal(untagged.body.detail, `422: 5: Git Repo Validation Error: Commit ${fixture.main.c3} without Tag`);
    const rename = await t.call('PATCH', `/repos/${repos.bob}`, { token: bob.token, body: { name: 'alice_unit' } });
    assert.equal(rename.body.detail, '422: 6: Repo Validation Error: Name is not unique');
    const renamed = await t.call('PATCH', `/repos/${repos.bob}`, { token: bob.token, body: { name: 'bob_unit2' } });
    assert.equal(renamed.body.name, 'bob_unit2');
  });

  test('available platforms of a compilable Repo: by tag, by tagged commit, by target; [] otherwise', async () => {
    const target = await t.call('GET', `/repos/available_platforms/${repos.alice}`, { token: bob.token });
    assert.equal(target.status, 200, target.raw);
    assert.deepEqual(target.body, [
      { name: 'Universal', link: 'https://example.org/0.0.10/universal.bin' },
      { name: 'esp32', link: 'https://example.org/0.0.10/esp32.bin' },
    ]);
    const byTag = await t.call('GET', `/repos/available_platforms/${repos.alice}?target_tag=v0.0.1`, { token: bob.token });
    assert.deepEqual(byTag.body, [{ name: 'Universal', link: 'https://example.org/0.0.1/universal.bin' }]);
    assert.deepEqual((await t.call('GET', `/repos/available_platforms/${repos.alice}?target_tag=9.9.9`, { token: bob.token })).body, []);
    assert.deepEqual((await t.call('GET', `/repos/available_platforms/${repos.alice}?target_commit=${fixture.main.c3}`, { token: bob.token })).body, []);
    const byCommit = await t.call('GET', `/repos/available_platforms/${repos.alice}?target_commit=${fixture.main.c1}`, { token: bob.token });
    assert.deepEqual(byCommit.body, [{ name: 'Universal', link: 'https://example.org/0.0.1/universal.bin' }]);
    assert.deepEqual((await t.call('GET', `/repos/available_platforms/${repos.bob}`, { token: bob.token })).body, [], 'not compilable');
    assert.equal((await t.call('GET', `/repos/available_platforms/${repos.alice}`)).status, 403);
  });

  test('versions group the Units by the commit they report, with tags', async () => {
    await addUnit(repos.alice, alice.uuid, 'Public', fixture.main.c2);
    await addUnit(repos.alice, alice.uuid, 'Public', fixture.main.c2);
    await addUnit(repos.alice, alice.uuid, 'Private', fixture.main.c3);
    await addUnit(repos.alice, alice.uuid, 'Public', null);
    const res = await t.call('GET', `/repos/versions/${repos.alice}`);
    assert.equal(res.status, 200, res.raw);
    assert.deepEqual(res.body, {
      unit_count: 3,
      versions: [
        { commit: fixture.main.c2, unit_count: 2, tag: '0.0.10' },
        { commit: fixture.main.c3, unit_count: 1, tag: null },
      ],
    });
  });

  test('visibility: anonymous sees Public Repos only, Private ones need a permission; no Repo looser than its Units', async () => {
    const hidden = await create(bob, 'bob_secret', { visibility_level: 'Private' });
    assert.equal(hidden.status, 201);
    repos.secret = hidden.body.uuid;
    const internal = await create(bob, 'bob_inside', { visibility_level: 'Internal' });
    repos.internal = internal.body.uuid;

    const anonymous = await t.call('GET', '/repos?limit=100');
    assert.deepEqual(anonymous.body.repos.map((r: { name: string }) => r.name).sort(), ['alice_unit', 'bob_unit2']);
    assert.equal((await t.call('GET', `/repos/${repos.internal}`)).status, 403);
    assert.equal((await t.call('GET', `/repos/${repos.internal}`, { token: alice.token })).status, 200);
    assert.equal((await t.call('GET', `/repos/${repos.secret}`, { token: alice.token })).status, 403);
    assert.equal((await t.call('GET', `/repos/${repos.secret}`, { token: bob.token })).status, 200);
    const aliceList = await t.call('GET', '/repos?limit=100', { token: alice.token });
    assert.ok(!aliceList.body.repos.some((r: { uuid: string }) => r.uuid === repos.secret));
    const bobList = await t.call('GET', `/repos?creator_uuid=${bob.uuid}&order_by_create_date=asc`, { token: bob.token });
    assert.deepEqual(bobList.body.repos.map((r: { name: string }) => r.name), ['bob_unit2', 'bob_secret', 'bob_inside']);
    const search = await t.call('GET', '/repos?search_string=inside', { token: alice.token });
    assert.deepEqual(search.body.repos.map((r: { name: string }) => r.name), ['bob_inside']);
    const byUrl = await t.call('GET', `/repos?search_string=unit.git&is_auto_update_repo=true&visibility_level=Public`, { token: alice.token });
    assert.deepEqual(byUrl.body.repos.map((r: { name: string }) => r.name).sort(), ['alice_unit', 'bob_unit2']);
    const paged = await t.call('GET', '/repos?limit=1&offset=1', { token: bob.token });
    assert.equal(paged.body.count, 4);
    assert.equal(paged.body.repos.length, 1);
    assert.equal((await t.call('GET', '/repos?limit=100000', { token: bob.token })).status, 422);

    const looser = await t.call('PATCH', `/repos/${repos.alice}`, { token: alice.token, body: { visibility_level: 'Private' } });
    assert.equal(looser.status, 422);
    assert.match(looser.body.detail, /^422: 2: Validation Error: The visibility level of the parent object Repo \(Private\) is lower than that of the child object Unit/);
  });

  test('firmware updates: creator-only per Repo, admin-only in bulk, both delegated to the Units hook', async () => {
    const calls: string[] = [];
    t.backend.app.repos.setUnitsFirmwareUpdater(async (repo: RepoRow, context) => {
      calls.push(`${repo.name}:${context.reason}`);
    });
    assert.equal((await t.call('PATCH', `/repos/update_units_firmware/${repos.alice}`, { token: bob.token })).status, 403);
    assert.equal((await t.call('PATCH', `/repos/update_units_firmware/${repos.alice}`, { token: alice.token })).status, 204);
    assert.deepEqual(calls, ['alice_unit:requested by the creator']);
    assert.equal((await t.call('POST', '/repos/bulk_update', { token: alice.token })).status, 403);
    assert.equal((await t.call('POST', '/repos/bulk_update', { token: admin.token })).status, 204);
    await waitFor(() => calls.length >= 4, { what: 'bulk update' });
    assert.deepEqual(calls.slice(1).sort(), ['alice_unit:bulk update', 'bob_inside:bulk update', 'bob_secret:bulk update', 'bob_unit2:bulk update']);
  });

  test('sync_local_repository of a public Repo syncs its registry entry (creator or admin only)', async () => {
    const before = await t.backend.deps.pg.query('SELECT sync_last_datetime FROM repository_registry WHERE uuid = $1', [registryUuid]);
    assert.equal((await t.call('PATCH', `/repos/sync_local_repository/${repos.bob}`, { token: alice.token })).status, 403);
    assert.equal((await t.call('PATCH', `/repos/sync_local_repository/${repos.bob}`, { token: bob.token })).status, 204);
    const afterSync = await t.backend.deps.pg.query('SELECT sync_last_datetime FROM repository_registry WHERE uuid = $1', [registryUuid]);
    assert.ok(afterSync.rows[0].sync_last_datetime > before.rows[0].sync_last_datetime);
  });

  test('delete: creator only, refused while Units exist', async () => {
    const withUnits = await t.call('DELETE', `/repos/${repos.alice}`, { token: alice.token });
    assert.equal(withUnits.status, 422);
    assert.match(withUnits.body.detail, /^422: 2: Validation Error: The array was expected to be empty: this Repo still has 4 Units$/);
    assert.equal((await t.call('DELETE', `/repos/${repos.bob}`, { token: alice.token })).status, 403);
    assert.equal((await t.call('DELETE', `/repos/${repos.bob}`, { token: bob.token })).status, 204);
    assert.equal((await t.call('GET', `/repos/${repos.bob}`, { token: bob.token })).status, 422);
  });

  test('a Repo whose default branch is gone has no target version (GitRepoError)', async () => {
    await t.backend.deps.pg.query(`UPDATE repos SET default_branch = NULL WHERE uuid = $1`, [repos.internal]);
    const res = await t.call('GET', `/repos/target_version/${repos.internal}`, { token: bob.token });
    assert.equal(res.status, 422);
    assert.equal(res.body.detail, "422: 5: Git Repo Validation Error: Branch None not found, available: ['dev', 'main']");
  });
});

