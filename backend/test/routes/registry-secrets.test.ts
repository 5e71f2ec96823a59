/**
 * Private repositories over an authenticated git HTTP server, size limits, and the promise
 * that credentials never appear in logs or API responses: the backend logs (level debug) into
 * a buffer and every response body is kept; both are grepped for the tokens at the end.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { commitFiles, createFixtureRepository, git, makeTempDir, randomContent, removeDir, startGitHttpServer, type GitHttpServer } from '../git/helpers.js';
import { bufferLogger, cloneDirectories, startPlatformStub, startRegistryBackend, type PlatformStub, type RegistryBackend, type TestUser } from '../jobs/registry-test-kit.js';

const GIT_USER = 'alice-git';
const PAT = 'glpat-AliceSecretToken-7Hq2';
const OTHER_PAT = 'glpat-OtherSecretToken-9Zx4';
const WRONG_PAT = 'glpat-WrongToken-3Kd8';
const SECRETS = [
  PAT,
  OTHER_PAT,
  WRONG_PAT,
  Buffer.from(`${GIT_USER}:${PAT}`).toString('base64'),
  Buffer.from(`${GIT_USER}:${OTHER_PAT}`).toString('base64'),
  Buffer.from(`bob-git:${WRONG_PAT}`).toString('base64'),
];

describe('private repositories, size limits and secrets', () => {
  let root: string;
  let gitServer: GitHttpServer;
  let stub: PlatformStub;
  let t: RegistryBackend;
  let logs: () => string;
  let alice: TestUser;
  let bob: TestUser;
  let privateUrl: string;
  let registryUuid: string;

  before(async () => {
    root = await makeTempDir('pu-secrets-');
    const projectRoot = join(root, 'served');
    await createFixtureRepository(join(projectRoot, 'team'), 'private');
    await createFixtureRepository(join(projectRoot, 'team'), 'other');
    gitServer = await startGitHttpServer(projectRoot, { username: GIT_USER, patToken: PAT });
    privateUrl = `${gitServer.url}/team/private.git`;
    stub = await startPlatformStub();
    stub.add(privateUrl, { sizeBytes: 10_000, auth: { username: GIT_USER, patToken: PAT }, releases: { 'v0.0.1': [['esp32', 'https://example.org/esp32.bin']] } });
    // the API accepts this token, the git server does not: the clone fails with an auth error
    stub.add(`${gitServer.url}/team/other.git`, { sizeBytes: 10_000, auth: { username: GIT_USER, patToken: OTHER_PAT } });
    const captured = bufferLogger('debug');
    logs = captured.text;
    t = await startRegistryBackend('secrets', { PU_MAX_EXTERNAL_REPO_SIZE: '1', PU_ACCESS_LOG: 'all' }, captured.logger);
    t.backend.app.registrySync.platformApi.baseUrl = stub.url;
    alice = await t.user('alice_sec');
    bob = await t.user('bob_sec');
  });
  after(async () => {
    await t?.close();
    await stub?.close();
    await gitServer?.close();
    await removeDir(root);
  });

  test('a private repository is cloned over authenticated HTTP; credentials are encrypted and masked', async () => {
    const created = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Gitlab', repository_url: privateUrl, is_public_repository: false, credentials: { username: GIT_USER, pat_token: PAT } },
    });
    assert.equal(created.status, 201, created.raw);
    assert.equal(created.body.sync_status, 'Updated', created.raw);
    assert.deepEqual(created.body.branches, ['dev', 'main']);
    assert.deepEqual(JSON.parse(created.body.releases_data), { 'v0.0.1': [['esp32', 'https://example.org/esp32.bin']] });
    registryUuid = created.body.uuid;
    assert.ok(gitServer.requests > 0, 'the clone went through the authenticated server');
    assert.ok(stub.requests.some((r) => r.privateToken === PAT), 'the GitLab API got the token in PRIVATE-TOKEN');
    const mine = await t.call('GET', `/repository_registry/get_credentials/${registryUuid}`, { token: alice.token });
    assert.deepEqual(mine.body, { credentials: { username: GIT_USER, pat_token: '********' }, status: 'Valid' });
    const stored = await t.backend.deps.pg.query('SELECT cipher_credentials_private_repository AS c FROM repository_registry WHERE uuid = $1', [registryUuid]);
    for (const secret of SECRETS) assert.ok(!String(stored.rows[0].c).includes(secret));
    const again = await t.call('PATCH', `/repository_registry/update_local_repository/${registryUuid}`, { token: alice.token });
    assert.equal(again.status, 204);
  });

  test("a private Repo keeps its own copy, synced with its creator's credentials; the badge comes from the Repo", async () => {
    const repo = await t.call('POST', '/repos', {
      token: alice.token,
      body: { repository_registry_uuid: registryUuid, default_branch: 'main', visibility_level: 'Private', name: 'alice_vault' },
    });
    assert.equal(repo.status, 201, repo.raw);
    assert.equal(repo.body.is_public_repository, false);
    assert.equal(repo.body.sync_status, 'Updated', repo.raw);
    assert.ok(repo.body.sync_finished_datetime);
    const entries = cloneDirectories(await readdir(t.saveRepoPath));
    assert.ok(entries.includes(`private-${repo.body.uuid}`), `own copy on disk: ${entries.join(', ')}`);
    assert.equal(t.backend.app.repos.storageKey(await t.backend.app.repos.get(repo.body.uuid)), `private-${repo.body.uuid}`);
    const synced = await t.call('PATCH', `/repos/sync_local_repository/${repo.body.uuid}`, { token: alice.token });
    assert.equal(synced.status, 204);
    const denied = await t.call('PATCH', `/repos/sync_local_repository/${repo.body.uuid}`, { token: bob.token });
    assert.equal(denied.status, 403);
    const target = await t.call('GET', `/repos/target_version/${repo.body.uuid}`, { token: alice.token });
    assert.equal(target.status, 200, target.raw);
    assert.equal(target.body.tag, '0.0.10');
  });

  test('wrong credentials end in Error with a clear message and never leak', async () => {
    const wrong = await t.call('PATCH', `/repository_registry/set_credentials/${registryUuid}`, {
      token: bob.token,
      body: { username: 'bob-git', pat_token: WRONG_PAT },
    });
    assert.equal(wrong.status, 204);
    const status = await t.call('GET', `/repository_registry/get_credentials/${registryUuid}`, { token: bob.token });
    assert.equal(status.body.status, 'Error');
    const repo = await t.call('POST', '/repos', {
      token: bob.token,
      body: { repository_registry_uuid: registryUuid, default_branch: 'main', visibility_level: 'Public', name: 'bob_vault' },
    });
    assert.equal(repo.status, 403, repo.raw);

    // valid for the API, refused by git: the sync ends in Error with an authentication message
    const other = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Gitlab', repository_url: `${gitServer.url}/team/other.git`, is_public_repository: false, credentials: { username: GIT_USER, pat_token: OTHER_PAT } },
    });
    assert.equal(other.status, 201, other.raw);
    assert.equal(other.body.sync_status, 'Error');
    assert.match(other.body.sync_error, /^422: 5: Git Repo Validation Error: Authentication failed for http:\/\/127\.0\.0\.1:\d+\/team\/other\.git: check the username and personal access token$/);

    const inUrl = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Gitlab', repository_url: privateUrl.replace('http://', `http://${GIT_USER}:${PAT}@`), is_public_repository: false, credentials: { username: GIT_USER, pat_token: PAT } },
    });
    assert.equal(inUrl.status, 422);
  });

  test('a repository over the size limit ends in Error and leaves no partial clone', async () => {
    const big = await createFixtureRepository(join(root, 'big'), 'heavy');
    await commitFiles(big.workPath, { 'data.bin': randomContent(1536 * 1024) }, 'big blob');
    await git(big.workPath, 'push', '--quiet', 'origin', 'main');
    stub.add(big.url, { sizeBytes: 0 }); // the API does not tell (GitLab without a token): the clone is measured
    const created = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Gitlab', repository_url: big.url, is_public_repository: true },
    });
    assert.equal(created.status, 201, created.raw);
    assert.equal(created.body.sync_status, 'Error');
    assert.match(created.body.sync_error, /^422: 5: Git Repo Validation Error: Repository size 1\.\d\d MB exceeds the limit of 1\.00 MB$/);
    assert.equal(created.body.local_repository_size, 0);
    const entries = await readdir(t.saveRepoPath);
    assert.ok(!entries.includes(created.body.uuid), 'no clone');
    assert.deepEqual(entries.filter((name) => name.startsWith('.')), [], 'no temporary directory left');

    // the API reports the size: refused before cloning
    const reported = await createFixtureRepository(join(root, 'reported'), 'huge');
    stub.add(reported.url, { sizeBytes: 5 * 2 ** 20 });
    const refused = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Github', repository_url: reported.url, is_public_repository: true },
    });
    assert.equal(refused.body.sync_status, 'Error');
    assert.equal(refused.body.sync_error, '422: 5: Git Repo Validation Error: Repository size 5.00 MB reported by the Github API exceeds the limit of 1.00 MB');
    assert.ok(!(await readdir(t.saveRepoPath)).includes(refused.body.uuid));
  });

  test('credentials never appear in logs or API responses', async () => {
    const text = logs();
    // the grep is meaningful: the logs cover the syncs, failures and requests above
    assert.match(text, /"msg":"sync finished"/);
    assert.match(text, /Authentication failed for http/);
    assert.match(text, /registry credentials set/);
    assert.match(text, /"msg":"request"/);
    assert.ok(t.responses.length > 10);
    for (const secret of SECRETS) {
      assert.ok(!text.includes(secret), `a secret reached the logs (${secret.slice(0, 8)}…)`);
      for (const body of t.responses) assert.ok(!body.includes(secret), `a secret reached a response (${secret.slice(0, 8)}…)`);
    }
  });
});
