/**
 * Private repositories over smart HTTP (git http-backend behind Basic auth): credentials are
 * used for clone and fetch, and never appear in errors, logs, argv-derived messages or the
 * files of the stored clone.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GitStore, GitSyncError, type SyncProgress } from '../../src/git/index.js';
import {
  README_V1,
  capturingLogger,
  commitFiles,
  createFixtureRepository,
  git,
  makeTempDir,
  removeDir,
  startGitHttpServer,
  type CapturedLog,
  type FixtureRepository,
  type GitHttpServer,
} from './helpers.js';

const USERNAME = 'alice-user';
const PAT = 'glpat-S3cr3tT0kenValue42';

/** Every text form of the secret we must never leak. */
const FORBIDDEN = [PAT, encodeURIComponent(PAT), Buffer.from(`${USERNAME}:${PAT}`).toString('base64'), Buffer.from(PAT).toString('base64')];

async function allFileContents(dir: string): Promise<string> {
  let text = '';
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) text += await allFileContents(path);
    else if ((await stat(path)).size < 1024 * 1024) text += (await readFile(path)).toString('latin1');
  }
  return text;
}

function assertNoSecret(text: string, where: string): void {
  for (const secret of FORBIDDEN) assert.ok(!text.includes(secret), `secret found in ${where}`);
}

describe('GitStore with credentials (local smart-HTTP server)', () => {
  let root: string;
  let fixture: FixtureRepository;
  let server: GitHttpServer;
  let url: string;
  let logs: CapturedLog[];
  let store: GitStore;
  const progress: SyncProgress[] = [];

  before(async () => {
    root = await makeTempDir();
    fixture = await createFixtureRepository(join(root), 'private');
    server = await startGitHttpServer(root, { username: USERNAME, patToken: PAT });
    url = `${server.url}/private.git`;
    const captured = capturingLogger();
    logs = captured.logs;
    store = new GitStore({
      rootPath: join(root, 'cache'),
      maxRepoSizeBytes: 50 * 2 ** 20,
      allowedProtocols: ['http'],
      logger: captured.logger,
    });
  });

  after(async () => {
    await server.close();
    await removeDir(root);
  });

  test('clone and fetch with credentials; nothing secret is stored in the clone', async () => {
    const result = await store.sync('private-1', url, {
      credentials: { username: USERNAME, patToken: PAT },
      onProgress: (p) => progress.push(p),
    });
    assert.equal(result.action, 'cloned');
    assert.deepEqual(result.branches, ['dev', 'main']);
    assert.equal((await store.readFile('private-1', fixture.main.c1, 'README.md'))?.toString(), README_V1);

    const c4 = await commitFiles(fixture.workPath, { 'more.txt': 'more' }, 'more');
    await git(fixture.workPath, 'push', '--quiet', 'origin', 'main');
    const fetched = await store.sync('private-1', url, { credentials: { username: USERNAME, patToken: PAT } });
    assert.equal(fetched.action, 'fetched');
    assert.equal(fetched.headCommit, c4);

    const config = await readFile(join(root, 'cache', 'private-1', 'config'), 'utf8');
    assert.match(config, new RegExp(`url = ${url.replace(/[.]/g, '\\.')}`));
    assertNoSecret(await allFileContents(join(root, 'cache', 'private-1')), 'the stored clone');
  });

  test('credentials embedded in the URL are moved out of it', async () => {
    const withUserinfo = url.replace('http://', `http://${USERNAME}:${encodeURIComponent(PAT)}@`);
    const result = await store.sync('private-2', withUserinfo);
    assert.equal(result.url, url);
    assert.equal(result.action, 'cloned');
    assertNoSecret(await allFileContents(join(root, 'cache', 'private-2')), 'the stored clone');
  });

  test('wrong or missing credentials fail with a clear, secret-free GitSyncError', async () => {
    const wrongPat = `${PAT}-wrong`;
    let error: unknown;
    try {
      await store.sync('private-3', url.replace('http://', `http://${USERNAME}:${wrongPat}@`));
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof GitSyncError);
    assert.equal(error.kind, 'AuthFailed');
    assert.equal(error.message, `Authentication failed for ${url}: check the username and personal access token`);
    assert.ok(!error.message.includes(wrongPat) && !(error.stack ?? '').includes(wrongPat));

    let anonymous: unknown;
    try {
      await store.sync('private-3', url);
    } catch (caught) {
      anonymous = caught;
    }
    assert.ok(anonymous instanceof GitSyncError);
    assert.equal(anonymous.kind, 'AuthFailed');
    assert.match(anonymous.message, /requires authentication/);
    assert.equal(await store.exists('private-3'), false);
    assert.deepEqual((await readdir(join(root, 'cache'))).sort(), ['private-1', 'private-2']);

    // a fetch of an existing clone with a wrong token fails but keeps the clone readable
    let fetchError: unknown;
    try {
      await store.sync('private-1', url, { credentials: { username: USERNAME, patToken: wrongPat } });
    } catch (caught) {
      fetchError = caught;
    }
    assert.ok(fetchError instanceof GitSyncError && fetchError.kind === 'AuthFailed');
    assert.equal((await store.readFile('private-1', fixture.main.c1, 'README.md'))?.toString(), README_V1);

    const logText = JSON.stringify(logs) + JSON.stringify(progress);
    assert.ok(logs.some((l) => l.msg === 'git sync failed'), 'failures are logged');
    assertNoSecret(logText, 'logs or progress');
    assert.ok(!logText.includes(wrongPat), 'the wrong token is not logged either');
    assert.ok(server.requests > 0);
  });
});
