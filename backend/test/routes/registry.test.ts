/**
 * Repository registry routes against the real app: one entry and one clone per URL, search
 * instead of create, sync with statuses (broken URL, stuck rows), who may sync, reads during
 * a sync, credentials of private entries, reference behaviours of §5.3.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { backendToken } from '@pepeunit/common';
import {
  commitFiles,
  createFixtureRepository,
  git,
  makeTempDir,
  randomContent,
  removeDir,
  type FixtureRepository,
} from '../git/helpers.js';
import { cloneDirectories, startPlatformStub, startRegistryBackend, type PlatformStub, type RegistryBackend, type TestUser } from '../jobs/registry-test-kit.js';
import { waitFor } from '@pepeunit/tests/wait';

const WEATHER_README = '# Weather Station\n\nMeasures humidity and pressure with a bme280 sensor.\n';

describe('repository registry', () => {
  let root: string;
  let fan: FixtureRepository;
  let weather: FixtureRepository;
  let stub: PlatformStub;
  let t: RegistryBackend;
  let admin: TestUser;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let fanUuid: string;

  before(async () => {
    root = await makeTempDir('pu-registry-');
    fan = await createFixtureRepository(root, 'fan');
    weather = await createFixtureRepository(join(root, 'station'), 'weather');
    await commitFiles(weather.workPath, { 'README.md': WEATHER_README, 'pepeunit.toml': '[general]\nname = "Weather Station"\n' }, 'weather readme');
    await git(weather.workPath, 'push', '--quiet', 'origin', 'main');
    stub = await startPlatformStub();
    stub.add(fan.url, { sizeBytes: 4096, releases: { '0.0.2': [['esp32', 'https://downloads.example.org/0.0.2/esp32.bin']] } });
    stub.add(weather.url, { sizeBytes: 4096 });
    t = await startRegistryBackend('registry');
    t.backend.app.registrySync.platformApi.baseUrl = stub.url;
    admin = await t.user('admin_reg');
    alice = await t.user('alice_reg');
    bob = await t.user('bob_reg');
    carol = await t.user('carol_reg');
  });
  after(async () => {
    await t?.close();
    await stub?.close();
    await removeDir(root);
  });

  test('two users registering the same public URL get one entry and one clone on disk', async () => {
    const first = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Github', repository_url: fan.url, is_public_repository: true },
    });
    assert.equal(first.status, 201, first.raw);
    fanUuid = first.body.uuid;
    assert.equal(first.body.sync_status, 'Updated', first.raw);
    assert.equal(first.body.sync_error, null);
    assert.deepEqual(first.body.branches, ['dev', 'main']);
    assert.equal(first.body.default_branch, 'main');
    assert.equal(first.body.title, 'Fan Regulator ds18b20');
    assert.equal(first.body.readme_heading, 'Fan Regulator');
    assert.equal(first.body.creator_uuid, alice.uuid);
    assert.ok(first.body.local_repository_size > 0);
    assert.deepEqual(JSON.parse(first.body.releases_data), { '0.0.2': [['esp32', 'https://downloads.example.org/0.0.2/esp32.bin']] });
    assert.equal((first.body.toml_metadata as { language: string }).language, 'Micropython');

    // same repository, spelled differently: trailing slash, no .git
    for (const spelling of [`${fan.url}/`, fan.url.replace(/\.git$/, '')]) {
      const again = await t.call('POST', '/repository_registry', {
        token: bob.token,
        body: { platform: 'Github', repository_url: spelling, is_public_repository: true },
      });
      assert.equal(again.status, 200, again.raw);
      assert.equal(again.body.uuid, fanUuid);
      assert.equal(again.body.creator_uuid, alice.uuid, 'the existing entry is returned unchanged');
    }
    const { rows } = await t.backend.deps.pg.query('SELECT count(*)::int AS n FROM repository_registry');
    assert.equal(rows[0].n, 1);
    assert.deepEqual(cloneDirectories(await readdir(t.saveRepoPath)), [fanUuid]);
    assert.ok((await stat(join(t.saveRepoPath, fanUuid, 'HEAD'))).isFile(), 'a bare clone');
  });

  test('URLs with credentials, a wrong suffix or a foreign scheme are refused and change nothing', async () => {
    const cases: [string, RegExp][] = [
      ['https://someone:ghp_SecretInUrl1234@github.com/owner/unit.git', /must not contain credentials/],
      ['https://github.com/owner/unit.gitx', /Repo URL is not correct/],
      ['ftp://example.org/owner/unit.git', /Repo URL is not correct/],
      ['not a url', /Repo URL is not correct/],
    ];
    for (const [url, message] of cases) {
      const res = await t.call('POST', '/repository_registry', { token: alice.token, body: { platform: 'Github', repository_url: url, is_public_repository: true } });
      assert.equal(res.status, 422, url);
      assert.match(res.body.detail, /^422: 13: Repository Registry Validation Error: /);
      assert.match(res.body.detail, message);
      assert.ok(!res.raw.includes('ghp_SecretInUrl1234'), 'the secret is not echoed');
    }
    const bad = await t.call('POST', '/repository_registry', { token: alice.token, body: { platform: 'Bitbucket', repository_url: fan.url, is_public_repository: true } });
    assert.equal(bad.status, 422);
    const anonymous = await t.call('POST', '/repository_registry', { body: { platform: 'Github', repository_url: weather.url, is_public_repository: true } });
    assert.equal(anonymous.status, 403);
    const { rows } = await t.backend.deps.pg.query('SELECT count(*)::int AS n FROM repository_registry');
    assert.equal(rows[0].n, 1);
  });

  test('search finds a repository by a word of its README, of pepeunit.toml or of its URL, with paging', async () => {
    const created = await t.call('POST', '/repository_registry', {
      token: carol.token,
      body: { platform: 'Gitlab', repository_url: weather.url, is_public_repository: true },
    });
    assert.equal(created.status, 201, created.raw);
    assert.equal(created.body.readme_paragraph, 'Measures humidity and pressure with a bme280 sensor.');

    const byReadme = await t.call('GET', '/repository_registry/search?search_string=humidity');
    assert.equal(byReadme.status, 200, byReadme.raw);
    assert.deepEqual(byReadme.body.repositories_registry.map((r: { uuid: string }) => r.uuid), [created.body.uuid]);
    assert.equal(byReadme.body.count, 1);

    const byToml = await t.call('GET', '/repository_registry/search?search_string=ds18b20', { token: bob.token });
    assert.deepEqual(byToml.body.repositories_registry.map((r: { uuid: string }) => r.uuid), [fanUuid]);
    const twoWords = await t.call('GET', '/repository_registry/search?search_string=FAN%20speed');
    assert.deepEqual(twoWords.body.repositories_registry.map((r: { uuid: string }) => r.uuid), [fanUuid]);
    const none = await t.call('GET', '/repository_registry/search?search_string=humidity%20ds18b20');
    assert.equal(none.body.count, 0);

    const all = await t.call('GET', '/repository_registry/search?search_string=pu-registry');
    assert.equal(all.body.count, 2, 'both URLs hold the fixture directory name');
    const page = await t.call('GET', '/repository_registry/search?search_string=pu-registry&limit=1&offset=1');
    assert.equal(page.body.count, 2);
    assert.equal(page.body.repositories_registry.length, 1);
    const gitlabOnly = await t.call('GET', '/repository_registry/search?platform=Gitlab');
    assert.deepEqual(gitlabOnly.body.repositories_registry.map((r: { uuid: string }) => r.uuid), [created.body.uuid]);
    const wildcard = await t.call('GET', '/repository_registry/search?search_string=%25');

    assert.equal(wildcard.body.count, 0, 'LIKE wildcards are matched literally');
  });

  test('a broken URL ends in Error with its message, leaves no clone and is never stuck in Processing', async () => {
    // unknown to the platform API: a clear message before any git command
    const unknownToApi = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Github', repository_url: `file://${join(root, 'nowhere', 'ghost.git')}`, is_public_repository: true },
    });
    assert.equal(unknownToApi.status, 201, unknownToApi.raw);
    assert.equal(unknownToApi.body.sync_status, 'Error');
    assert.match(unknownToApi.body.sync_error, /^422: 5: Git Repo Validation Error: Repository file:\/\/.*ghost\.git not found: the Github API does not know it \(HTTP 404\)$/);
    assert.equal((await t.call('DELETE', `/repository_registry/${unknownToApi.body.uuid}`, { token: alice.token })).status, 204);

    // known to the API, but git cannot read it
    const missing = `file://${join(root, 'nowhere', 'missing.git')}`;
    stub.add(missing, { sizeBytes: 1 });
    const res = await t.call('POST', '/repository_registry', { token: alice.token, body: { platform: 'Gitlab', repository_url: missing, is_public_repository: true } });
    assert.equal(res.status, 201, res.raw);
    assert.equal(res.body.sync_status, 'Error');
    assert.match(res.body.sync_error, /^422: 5: Git Repo Validation Error: Repository file:\/\/.*missing\.git not found or not accessible/);
    assert.ok(res.body.sync_last_datetime);
    assert.ok(res.body.sync_finished_datetime);
    assert.deepEqual(res.body.branches, []);
    assert.ok(!cloneDirectories(await readdir(t.saveRepoPath)).includes(res.body.uuid));

    const status = await t.call('GET', `/repository_registry/sync_status/${res.body.uuid}`, { token: alice.token });
    assert.equal(status.status, 200);
    assert.equal(status.body.sync_status, 'Error');
    assert.equal(status.body.is_running, false);
    assert.equal(status.body.progress, null);

    // a row left in Processing by a crashed process is healed as soon as its status is read
    await t.backend.deps.pg.query(`UPDATE repository_registry SET sync_status = 'Processing', sync_error = NULL WHERE uuid = $1`, [res.body.uuid]);
    const healed = await t.call('GET', `/repository_registry/sync_status/${res.body.uuid}`);
    assert.equal(healed.body.is_running, false);
    assert.equal(healed.body.sync_status, 'Error');
    assert.match(healed.body.sync_error, /Sync was interrupted/);

    // the creator may delete the broken entry
    const deleted = await t.call('DELETE', `/repository_registry/${res.body.uuid}`, { token: alice.token });
    assert.equal(deleted.status, 204);
  });

  test('only admins may "sync everything now": non-admin 403, admin 202 with a summary', async () => {
    const denied = await t.call('POST', '/repository_registry/sync_all', { token: alice.token });
    assert.equal(denied.status, 403);
    assert.match(denied.body.detail, /^403: 1: No Access/);
    const anonymous = await t.call('POST', '/repository_registry/sync_all');
    assert.equal(anonymous.status, 403);

    const before = await t.backend.deps.pg.query('SELECT sync_last_datetime FROM repository_registry WHERE uuid = $1', [fanUuid]);
    const accepted = await t.call('POST', '/repository_registry/sync_all', { token: admin.token });
    assert.equal(accepted.status, 202, accepted.raw);
    assert.equal(accepted.body.accepted, true);
    assert.equal(accepted.body.registries, 2);
    assert.equal(accepted.body.private_repos, 0);
    await waitFor(() => !t.backend.app.registrySync.syncAllRunning, { what: 'sync of everything', timeoutMs: 30_000 });
    const afterRun = await t.backend.deps.pg.query('SELECT sync_last_datetime, sync_status FROM repository_registry WHERE uuid = $1', [fanUuid]);
    assert.ok(afterRun.rows[0].sync_last_datetime > before.rows[0].sync_last_datetime, 'the entry was synced again');
    assert.equal(afterRun.rows[0].sync_status, 'Updated');
  });

  test('a user cannot sync a registry entry they do not control', async () => {
    const denied = await t.call('PATCH', `/repository_registry/update_local_repository/${fanUuid}`, { token: carol.token });
    assert.equal(denied.status, 403, denied.raw);
    assert.match(denied.body.detail, /^403: 1: No Access: Only an admin, the creator/);
    const anonymous = await t.call('PATCH', `/repository_registry/update_local_repository/${fanUuid}`);
    assert.equal(anonymous.status, 403);
    // the creator, an admin, and someone owning a Repo on it may
    assert.equal((await t.call('PATCH', `/repository_registry/update_local_repository/${fanUuid}`, { token: alice.token })).status, 204);
    assert.equal((await t.call('PATCH', `/repository_registry/update_local_repository/${fanUuid}`, { token: admin.token })).status, 204);
    const repo = await t.call('POST', '/repos', {
      token: carol.token,
      body: { repository_registry_uuid: fanUuid, default_branch: 'main', visibility_level: 'Public', name: 'carol_fan' },
    });
    assert.equal(repo.status, 201, repo.raw);
    assert.equal((await t.call('PATCH', `/repository_registry/update_local_repository/${fanUuid}`, { token: carol.token })).status, 204);
  });

  test('20 concurrent file reads during a sync all return consistent content', async () => {
    const repo = await t.backend.app.repos.get((await t.backend.deps.pg.query(`SELECT uuid FROM repos WHERE name = 'carol_fan'`)).rows[0].uuid);
    assert.equal(t.backend.app.repos.storageKey(repo), fanUuid, 'public Repos read the shared clone');
    const expected = new Map([
      [fan.main.c1, '{\n  "WIFI_SSID": "",\n  "WIFI_PASS": ""\n}'],
      [fan.main.c2, '{\n  "WIFI_SSID": "",\n  "WIFI_PASS": "",\n  "PWM_FAN_PIN": 4\n}'],
    ]);
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 3; i++) files[`blob-${i}.bin`] = randomContent(1024 * 1024);
    const newHead = await commitFiles(fan.workPath, files, 'big commit');
    await git(fan.workPath, 'push', '--quiet', 'origin', 'main');

    const syncing = t.call('PATCH', `/repository_registry/update_local_repository/${fanUuid}`, { token: alice.token });
    await waitFor(() => t.backend.app.registrySync.isRunningHere('registry', fanUuid), { what: 'sync start' });
    let done = false;
    void syncing.finally(() => {
      done = true;
    });
    let readsDuringSync = 0;
    let sawProgress = false;
    let sawProcessing = false;
    let rounds = 0;
    do {
      const commits = [...expected.keys()];
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const commit = commits[i % commits.length]!;
          return t.backend.app.gitStore.readFile(t.backend.app.repos.storageKey(repo), commit, 'env_example.json').then((content) => ({ commit, content }));
        }),
      );
      for (const { commit, content } of results) assert.equal(content?.toString(), expected.get(commit));
      if (!done) {
        readsDuringSync += results.length;
        const status = await t.call('GET', `/repository_registry/sync_status/${fanUuid}`, { token: alice.token });
        if (!done && status.body.is_running) {
          // The row turns Updated a moment before the in-memory "running" mark is cleared.
          assert.ok(['Processing', 'Updated'].includes(status.body.sync_status), status.body.sync_status);
          if (status.body.sync_status === 'Processing') sawProcessing = true;
          if (status.body.progress?.stage) sawProgress = true;
        }
      }
      rounds++;
    } while (!done && rounds < 500);
    const result = await syncing;
    assert.equal(result.status, 204, result.raw);
    assert.ok(readsDuringSync >= 20, `at least one round of 20 reads ran during the sync (${readsDuringSync})`);
    assert.ok(sawProgress, 'the status endpoint reported live progress during the sync');
    assert.ok(sawProcessing, 'the status endpoint reported Processing during the sync');
    const registry = await t.call('GET', `/repository_registry/${fanUuid}`);
    assert.equal(registry.body.sync_status, 'Updated');
    const [newest] = await t.backend.app.gitStore.commits(fanUuid, 'main');
    assert.equal(newest?.commit, newHead);
  });

  test('branch_commits lists commits with tags; an unknown branch is a GitRepoError', async () => {
    const commits = await t.call('GET', `/repository_registry/branch_commits/${fanUuid}?repo_branch=main&limit=500`, { token: bob.token });
    assert.equal(commits.status, 200, commits.raw);
    assert.equal(commits.body.at(-1).commit, fan.main.c1, 'oldest last');
    assert.equal(commits.body.at(-1).tag, 'v0.0.1');
    const tagged = await t.call('GET', `/repository_registry/branch_commits/${fanUuid}?repo_branch=main&only_tag=true`, { token: bob.token });
    assert.deepEqual(tagged.body.map((c: { tag: string }) => c.tag), ['0.0.10', 'v0.0.1']);
    const paged = await t.call('GET', `/repository_registry/branch_commits/${fanUuid}?repo_branch=main&offset=1&limit=1`, { token: bob.token });
    assert.equal(paged.body.length, 1);
    assert.equal(paged.body[0].commit, commits.body[1].commit);
    const unknown = await t.call('GET', `/repository_registry/branch_commits/${fanUuid}?repo_branch=nope`, { token: bob.token });
    assert.equal(unknown.status, 422);
    assert.equal(unknown.body.detail, "422: 5: Git Repo Validation Error: Branch nope not found, available: ['dev', 'main']");
    const anonymous = await t.call('GET', `/repository_registry/branch_commits/${fanUuid}?repo_branch=main`);
    assert.equal(anonymous.status, 403);
  });

  test('private entries: credentials encrypted, masked, per user; hidden from anonymous lists and from search', async () => {
    const privateRepo = await createFixtureRepository(join(root, 'secret-team'), 'vault');
    stub.add(privateRepo.url, { sizeBytes: 2048, auth: { username: 'alice', patToken: 'ghp_AliceToken000' } });
    const noCredentials = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Github', repository_url: privateRepo.url, is_public_repository: false },
    });
    assert.equal(noCredentials.status, 422);
    assert.match(noCredentials.body.detail, /Credentials is not valid/);

    const created = await t.call('POST', '/repository_registry', {
      token: alice.token,
      body: { platform: 'Github', repository_url: privateRepo.url, is_public_repository: false, credentials: { username: 'alice', pat_token: 'ghp_AliceToken000' } },
    });
    assert.equal(created.status, 201, created.raw);
    assert.equal(created.body.sync_status, 'Updated', created.raw);
    const uuid = created.body.uuid;
    const stored = await t.backend.deps.pg.query('SELECT cipher_credentials_private_repository AS c FROM repository_registry WHERE uuid = $1', [uuid]);
    assert.ok(!String(stored.rows[0].c).includes('ghp_AliceToken000'), 'encrypted at rest');
    assert.ok(!created.raw.includes('ghp_AliceToken000'));

    const mine = await t.call('GET', `/repository_registry/get_credentials/${uuid}`, { token: alice.token });
    assert.deepEqual(mine.body, { credentials: { username: 'alice', pat_token: '********' }, status: 'Valid' });
    assert.equal((await t.call('GET', `/repository_registry/get_credentials/${uuid}`, { token: bob.token })).body, null);

    // The masked form sent back (a form that round-trips) keeps the real token; it is never stored as "********".
    const roundTrip = await t.call('PATCH', `/repository_registry/set_credentials/${uuid}`, { token: alice.token, body: mine.body.credentials });
    assert.equal(roundTrip.status, 204, roundTrip.raw);
    const storedToken = async () => {
      const { rows } = await t.backend.deps.pg.query('SELECT cipher_credentials_private_repository AS c FROM repository_registry WHERE uuid = $1', [uuid]);
      return JSON.parse(t.backend.app.cipher.decrypt(rows[0].c))[alice.uuid].credentials.pat_token;
    };
    assert.equal(await storedToken(), 'ghp_AliceToken000');
    assert.equal((await t.call('GET', `/repository_registry/get_credentials/${uuid}`, { token: alice.token })).body.status, 'Valid');
    const maskOnly = await t.call('PATCH', `/repository_registry/set_credentials/${uuid}`, { token: bob.token, body: { username: 'bob', pat_token: '********' } });
    assert.equal(maskOnly.status, 422, 'a mask is not a token for a user without stored credentials');
    assert.equal((await t.call('GET', `/repository_registry/get_credentials/${uuid}`, { token: bob.token })).body, null, 'nothing stored');

    // bob joins with wrong credentials (Error), then with right ones (Valid)
    const wrong = await t.call('PATCH', `/repository_registry/set_credentials/${uuid}`, { token: bob.token, body: { username: 'bob', pat_token: 'ghp_Wrong' } });
    assert.equal(wrong.status, 204);
    assert.equal((await t.call('GET', `/repository_registry/get_credentials/${uuid}`, { token: bob.token })).body.status, 'Error');
    const denied = await t.call('GET', `/repository_registry/branch_commits/${uuid}?repo_branch=main`, { token: bob.token });
    assert.equal(denied.status, 403);
    assert.equal(denied.body.detail, '403: 1: No Access: Status Credentials external Platform: Error');
    const joined = await t.call('POST', '/repository_registry', {
      token: bob.token,
      body: { platform: 'Github', repository_url: privateRepo.url, is_public_repository: false, credentials: { username: 'alice', pat_token: 'ghp_AliceToken000' } },
    });
    assert.equal(joined.status, 200, joined.raw);
    assert.equal(joined.body.uuid, uuid);
    assert.equal((await t.call('GET', `/repository_registry/get_credentials/${uuid}`, { token: bob.token })).body.status, 'Valid');
    assert.equal((await t.call('GET', `/repository_registry/branch_commits/${uuid}?repo_branch=main`, { token: bob.token })).status, 200);

    const onPublic = await t.call('PATCH', `/repository_registry/set_credentials/${fanUuid}`, { token: bob.token, body: { username: 'x', pat_token: 'y' } });
    assert.equal(onPublic.status, 422);
    assert.equal(onPublic.body.detail, '422: 13: Repository Registry Validation Error: This Repository is Public');

    const anonymousList = await t.call('GET', '/repository_registry?limit=100');
    assert.ok(anonymousList.body.repositories_registry.length >= 2);
    assert.ok(anonymousList.body.repositories_registry.every((r: { is_public_repository: boolean }) => r.is_public_repository));
    assert.equal((await t.call('GET', `/repository_registry/${uuid}`)).status, 403);
    const userList = await t.call('GET', `/repository_registry?creator_uuid=${alice.uuid}&is_public_repository=false`, { token: alice.token });
    assert.deepEqual(userList.body.repositories_registry.map((r: { uuid: string }) => r.uuid), [uuid]);
    const search = await t.call('GET', '/repository_registry/search?search_string=vault', { token: alice.token });
    assert.equal(search.body.count, 0, 'private entries are never in the shared search');
    const byUrl = await t.call('GET', `/repository_registry?search_string=vault`, { token: bob.token });
    assert.equal(byUrl.body.count, 1);
  });

  test('every registry and repos endpoint is in the OpenAPI document', async () => {
    const doc = await t.backend.app.inject({ method: 'GET', url: '/pepeunit/api/v1/openapi.json' });
    assert.equal(doc.statusCode, 200);
    const paths = Object.keys(doc.json().paths as Record<string, unknown>);
    for (const path of [
      '/pepeunit/api/v1/repository_registry/',
      '/pepeunit/api/v1/repository_registry/search',
      '/pepeunit/api/v1/repository_registry/sync_all',
      '/pepeunit/api/v1/repository_registry/sync_status/{uuid}',
      '/pepeunit/api/v1/repository_registry/branch_commits/{uuid}',
      '/pepeunit/api/v1/repos/',
      '/pepeunit/api/v1/repos/sync_local_repository/{uuid}',
      '/pepeunit/api/v1/repos/available_platforms/{uuid}',
    ]) {
      assert.ok(paths.includes(path), `${path} documented`);
    }
  });

  test('the Backend agent clones missing copies (backend_sync_registry); others get 403', async () => {
    await rm(join(t.saveRepoPath, fanUuid), { recursive: true, force: true });
    const denied = await t.call('PATCH', '/repository_registry/backend_sync_registry', { token: admin.token });
    assert.equal(denied.status, 403);
    const backendJwt = backendToken(t.backend.deps.config.domain, t.backend.deps.config.secretKey);
    const res = await t.call('PATCH', '/repository_registry/backend_sync_registry', { token: backendJwt });
    assert.equal(res.status, 204, res.raw);
    assert.ok(await t.backend.app.gitStore.exists(fanUuid), 'the missing clone is back');
    const entry = await t.call('GET', `/repository_registry/${fanUuid}`);
    assert.equal(entry.body.sync_status, 'Updated');
  });

  test('deleting: creator only, refused while Repos use the entry, removes the clone', async () => {
    const withRepos = await t.call('DELETE', `/repository_registry/${fanUuid}`, { token: alice.token });
    assert.equal(withRepos.status, 422);
    assert.match(withRepos.body.detail, /^422: 2: Validation Error: The array was expected to be empty/);
    const weatherEntry = (await t.call('GET', '/repository_registry/search?search_string=humidity')).body.repositories_registry[0];
    const notCreator = await t.call('DELETE', `/repository_registry/${weatherEntry.uuid}`, { token: alice.token });
    assert.equal(notCreator.status, 403);
    const deleted = await t.call('DELETE', `/repository_registry/${weatherEntry.uuid}`, { token: carol.token });
    assert.equal(deleted.status, 204);
    assert.ok(!(await t.backend.app.gitStore.exists(weatherEntry.uuid)));
    assert.equal((await t.call('GET', `/repository_registry/${weatherEntry.uuid}`)).status, 422);
  });
});
