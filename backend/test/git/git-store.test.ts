import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';
import { GitReadError, GitStore, GitSyncError, type SyncProgress } from '../../src/git/index.js';
import {
  README_V1,
  SCHEMA_EXAMPLE,
  capturingLogger,
  closedPort,
  commitFiles,
  createFixtureRepository,
  git,
  makeTempDir,
  randomContent,
  removeDir,
  type FixtureRepository,
} from './helpers.js';

const execFileAsync = promisify(execFile);
const TEST_PROTOCOLS = ['file', 'http'];

async function streamToBuffer(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Archive listing by an independent reader (Python's tarfile / zipfile). */
async function listArchive(path: string, format: 'tar' | 'zip'): Promise<string[]> {
  const script =
    format === 'tar'
      ? 'import sys,tarfile; print("\\n".join(m.name for m in tarfile.open(sys.argv[1]).getmembers() if m.isfile()))'
      : 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print("\\n".join(n for n in z.namelist() if not n.endswith("/")))';
  const { stdout } = await execFileAsync('python3', ['-c', script, path]);
  return stdout.trim().split('\n').sort();
}

async function assertRejectsWith(
  promise: Promise<unknown>,
  errorClass: new (...args: never[]) => Error & { kind: string },
  kind: string,
  message?: RegExp,
): Promise<Error> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof errorClass, `expected ${errorClass.name}, got ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

describe('GitStore', () => {
  let root: string;
  let storage: string;
  let fixture: FixtureRepository;
  let store: GitStore;
  const key = 'registry-main';

  before(async () => {
    root = await makeTempDir();
    storage = join(root, 'repo_cache');
    fixture = await createFixtureRepository(root);
    store = new GitStore({ rootPath: storage, maxRepoSizeBytes: 50 * 2 ** 20, allowedProtocols: TEST_PROTOCOLS });
  });

  after(async () => {
    await removeDir(root);
  });

  test('first sync clones a bare copy with branches, head commit, metadata and progress', async () => {
    const progress: SyncProgress[] = [];
    const result = await store.sync(key, fixture.url, { onProgress: (p) => progress.push(p) });
    assert.equal(result.action, 'cloned');
    assert.equal(result.defaultBranch, 'main');
    assert.deepEqual(result.branches, ['dev', 'main']);
    assert.equal(result.headCommit, fixture.main.c3);
    assert.ok(result.sizeBytes > 0);
    assert.equal(result.sizeBytes, await store.sizeOnDisk(key));
    assert.equal(result.metadata?.title, 'Fan Regulator ds18b20');
    assert.equal(result.metadata?.readmeHeading, 'Fan Regulator');
    assert.equal(result.metadata?.toml.language, 'Micropython');
    assert.ok(await store.exists(key));
    assert.deepEqual(await store.listKeys(), [key]);
    // bare: no work tree files at the top level
    const entries = await readdir(join(storage, key));
    assert.ok(entries.includes('objects') && entries.includes('HEAD'));
    assert.ok(!entries.includes('README.md'));
    // progress: our stages and git's own percent stages
    const stages = progress.map((p) => p.stage);
    assert.ok(stages.includes('clone'));
    assert.ok(progress.some((p) => p.stage === 'receiving' && p.percent === 100), JSON.stringify(progress));
    assert.equal(progress.at(-1)?.stage, 'done');
  });

  test('branches exclude HEAD even when the remote has a branch literally named HEAD', async () => {
    const refs = await git(join(storage, key), 'for-each-ref', '--format=%(refname)', 'refs/heads/');
    assert.ok(refs.split('\n').includes('refs/heads/HEAD'), 'fixture must contain refs/heads/HEAD');
    assert.deepEqual(await store.branches(key), ['dev', 'main']);
  });

  test('commits are newest first with tags mapped onto the commits of that branch', async () => {
    const main = await store.commits(key, 'main');
    assert.deepEqual(
      main.map((c) => [c.commit, c.summary, c.tag]),
      [
        [fixture.main.c3, 'untagged change', null],
        [fixture.main.c2, 'add PWM_FAN_PIN', '0.0.10'],
        [fixture.main.c1, 'initial version', 'v0.0.1'],
      ],
    );
    const dev = await store.commits(key, 'dev');
    assert.deepEqual(
      dev.map((c) => c.tag),
      ['dev-1.0', '0.0.10', 'v0.0.1'],
    );
    const tags = await store.tags(key);
    assert.deepEqual(
      tags.map((t) => t.name).sort(),
      ['0.0.10', '0.0.2', 'dev-1.0', 'v0.0.1'],
    );
    assert.equal(tags.find((t) => t.name === '0.0.2')?.commit, fixture.main.c2, 'annotated tags are peeled to commits');
    await assertRejectsWith(store.commits(key, 'nope'), GitReadError, 'BranchNotFound', /^Branch nope not found, available: \['dev', 'main'\]$/);
    await assertRejectsWith(store.commits(key, '--all'), GitReadError, 'InvalidArgument');
    const history = await store.branchHistory(key, 'missing');
    assert.deepEqual(history, { branch: 'missing', availableBranches: ['dev', 'main'], commits: [] });
  });

  test('readFile reads by commit without a work tree', async () => {
    const old = await store.readFile(key, fixture.main.c1, 'env_example.json');
    const current = await store.readFile(key, fixture.main.c3, 'env_example.json');
    assert.deepEqual(JSON.parse(old!.toString()), { WIFI_SSID: '', WIFI_PASS: '' });
    assert.deepEqual(JSON.parse(current!.toString()), { WIFI_SSID: '', WIFI_PASS: '', PWM_FAN_PIN: 4 });
    assert.equal((await store.readFile(key, fixture.main.c1.slice(0, 7), 'README.md'))?.toString(), README_V1);
    assert.equal((await store.readFile(key, 'main', './README.md'))?.toString(), README_V1, 'refs and ./ paths');
    assert.equal(await store.readFile(key, fixture.main.c1, 'missing.txt'), null);
    assert.equal(await store.readFile(key, fixture.dev.d1, 'src'), null, 'a directory is not a file');
    assert.equal((await store.readFile(key, fixture.dev.d1, 'src/lib/util.py'))?.toString(), 'X = 1\n');
    await assertRejectsWith(store.readFile(key, 'deadbeef00', 'README.md'), GitReadError, 'CommitNotFound');
    await assertRejectsWith(store.readFile(key, fixture.main.c1, '../../etc/passwd'), GitReadError, 'InvalidArgument', /"\.\." is not allowed/);
    await assertRejectsWith(store.readFile(key, fixture.main.c1, '/etc/passwd'), GitReadError, 'InvalidArgument');
    await assertRejectsWith(store.readFile(key, '--output=/tmp/x', 'README.md'), GitReadError, 'InvalidArgument');
    await assertRejectsWith(store.readFile(key, 'HEAD@{1}', 'README.md'), GitReadError, 'InvalidArgument');
    await assertRejectsWith(store.readFile('../etc', fixture.main.c1, 'README.md'), GitReadError, 'InvalidArgument');
    await assertRejectsWith(store.readFile('never-synced', fixture.main.c1, 'README.md'), GitReadError, 'NotSynced');
  });

  test('readJson parses JSON and reports missing and invalid files clearly', async () => {
    assert.deepEqual(await store.readJson(key, fixture.main.c2, 'schema_example.json'), SCHEMA_EXAMPLE);
    await assertRejectsWith(
      store.readJson(key, fixture.main.c1, 'nothing.json'),
      GitReadError,
      'FileNotFound',
      new RegExp(`^File nothing\\.json not found in repo commit ${fixture.main.c1}$`),
    );
    await assertRejectsWith(store.readJson(key, fixture.dev.d1, 'broken.json'), GitReadError, 'InvalidJson', /^Data broken\.json is invalid: /);
  });

  test('listTree lists every file of a commit with sizes', async () => {
    const tree = await store.listTree(key, fixture.dev.d1);
    const paths = tree.map((entry) => entry.path).sort();
    assert.deepEqual(paths, [
      '.pepeignore',
      'README.md',
      'broken.json',
      'env_example.json',
      'pepeunit.toml',
      'schema_example.json',
      'src/lib/util.py',
      'src/main.py',
    ]);
    const main = tree.find((entry) => entry.path === 'src/main.py');
    assert.equal(main?.type, 'blob');
    assert.equal(main?.size, Buffer.byteLength('print("hello")\n'));
    await assertRejectsWith(store.listTree(key, 'abcdef1234'), GitReadError, 'CommitNotFound');
  });

  test('archive produces readable tar and zip streams of a commit', async () => {
    for (const format of ['tar', 'zip'] as const) {
      const data = await streamToBuffer(await store.archive(key, fixture.dev.d1, format));
      const file = join(root, `archive.${format}`);
      await writeFile(file, data);
      assert.deepEqual(await listArchive(file, format), [
        '.pepeignore',
        'README.md',
        'broken.json',
        'env_example.json',
        'pepeunit.toml',
        'schema_example.json',
        'src/lib/util.py',
        'src/main.py',
      ]);
    }
    await assertRejectsWith(store.archive(key, 'abcdef1234', 'zip'), GitReadError, 'CommitNotFound');
  });

  test('exportTree writes the files of a commit into a directory, leaving the clone untouched', async () => {
    const destination = join(root, 'export-c1');
    await store.exportTree(key, fixture.main.c1, destination);
    assert.deepEqual((await readdir(destination)).sort(), [
      '.pepeignore',
      'README.md',
      'env_example.json',
      'pepeunit.toml',
      'schema_example.json',
    ]);
    assert.equal(await readFile(join(destination, 'README.md'), 'utf8'), README_V1);
    assert.ok(!(await readdir(join(storage, key))).includes('index'), 'the bare clone gets no index file');
  });

  test("the operator's EDITOR, PAGER, GIT_* and SSH_ASKPASS never reach git (reads work, nothing runs)", async () => {
    const marker = join(root, 'ambient-program-ran');
    const program = join(root, 'ambient-program.sh');
    await writeFile(program, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    const names = ['EDITOR', 'VISUAL', 'PAGER', 'GIT_PAGER', 'GIT_EDITOR', 'SSH_ASKPASS', 'GIT_ASKPASS', 'GIT_SSH_COMMAND', 'GIT_DIR'];
    const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
    for (const n of names) process.env[n] = n === 'GIT_DIR' ? join(root, 'elsewhere') : program;
    try {
      // a fresh store: its readers are created while the variables are set
      const other = new GitStore({ rootPath: storage, maxRepoSizeBytes: 50 * 2 ** 20, allowedProtocols: TEST_PROTOCOLS });
      assert.deepEqual(await other.branches(key), ['dev', 'main']);
      assert.equal((await other.commits(key, 'main'))[0]?.commit, fixture.main.c3);
      assert.equal((await other.sync(key, fixture.url)).action, 'fetched');
    } finally {
      for (const n of names) {
        if (saved[n] === undefined) delete process.env[n];
        else process.env[n] = saved[n];
      }
    }
    await assert.rejects(readFile(marker), { code: 'ENOENT' });
  });

  test('a later sync fetches new commits and tags and prunes deleted branches', async () => {
    await git(fixture.workPath, 'checkout', '--quiet', '-b', 'feature');
    await commitFiles(fixture.workPath, { 'feature.txt': 'x' }, 'feature');
    await git(fixture.workPath, 'push', '--quiet', 'origin', 'feature');
    await store.sync(key, fixture.url);
    assert.deepEqual(await store.branches(key), ['dev', 'feature', 'main']);

    await git(fixture.workPath, 'checkout', '--quiet', 'main');
    const c4 = await commitFiles(fixture.workPath, { 'notes.txt': 'fourth\n' }, 'fourth');
    await git(fixture.workPath, 'tag', '0.0.11');
    await git(fixture.workPath, 'push', '--quiet', 'origin', 'main', '0.0.11', ':feature');
    const result = await store.sync(key, fixture.url);
    assert.equal(result.action, 'fetched');
    assert.equal(result.headCommit, c4);
    assert.deepEqual(result.branches, ['dev', 'main']);
    const [newest] = await store.commits(key, 'main');
    assert.deepEqual(newest, { commit: c4, summary: 'fourth', tag: '0.0.11' });
  });

  test('20 concurrent readFile calls while a fetch runs all return consistent content', async () => {
    const expected = new Map([
      [fixture.main.c1, '{\n  "WIFI_SSID": "",\n  "WIFI_PASS": ""\n}'],
      [fixture.main.c2, '{\n  "WIFI_SSID": "",\n  "WIFI_PASS": "",\n  "PWM_FAN_PIN": 4\n}'],
    ]);
    // make the fetch transfer a few megabytes so it takes a while
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 6; i++) files[`blob-${i}.bin`] = randomContent(1024 * 1024);
    const newHead = await commitFiles(fixture.workPath, files, 'big commit');
    await git(fixture.workPath, 'push', '--quiet', 'origin', 'main');
    const oldHead = (await store.branchHistory(key, 'main')).commits[0]?.commit;

    let syncDone = false;
    const syncPromise = store.sync(key, fixture.url).finally(() => {
      syncDone = true;
    });
    assert.ok(store.isSyncing(key));
    let rounds = 0;
    let readsDuringSync = 0;
    do {
      const commits = [...expected.keys()];
      const reads = Array.from({ length: 20 }, (_, i) => {
        const commit = commits[i % commits.length]!;
        return store.readFile(key, commit, 'env_example.json').then((content) => ({ commit, content }));
      });
      const heads = store.branchHistory(key, 'main').then((h) => h.commits[0]?.commit);
      const results = await Promise.all(reads);
      if (!syncDone) readsDuringSync += results.length;
      for (const { commit, content } of results) assert.equal(content?.toString(), expected.get(commit));
      assert.ok([oldHead, newHead].includes(await heads), 'branch head is either the old or the new one');
      rounds++;
    } while (!syncDone && rounds < 500);
    const result = await syncPromise;
    assert.equal(result.headCommit, newHead);
    assert.ok(readsDuringSync >= 20, `at least one round of 20 reads completed during the fetch (${readsDuringSync})`);
  });

  test('concurrent sync calls for the same key join the running one (git clone runs once)', async () => {
    const { logger, logs } = capturingLogger();
    const joinStore = new GitStore({ rootPath: join(root, 'join-cache'), maxRepoSizeBytes: 50 * 2 ** 20, allowedProtocols: TEST_PROTOCOLS, logger });
    const first: SyncProgress[] = [];
    const second: SyncProgress[] = [];
    const p1 = joinStore.sync('joined', fixture.url, { onProgress: (p) => first.push(p) });
    const p2 = joinStore.sync('joined', fixture.url, { onProgress: (p) => second.push(p) });
    const p3 = joinStore.sync('joined', fixture.url);
    assert.equal(p1, p2);
    assert.equal(p1, p3);
    const [r1, r2] = await Promise.all([p1, p2, p3]);
    assert.equal(r1, r2);
    assert.equal(logs.filter((l) => l.msg === 'git clone started').length, 1);
    assert.equal(logs.filter((l) => l.msg === 'git fetch started').length, 0);
    assert.equal(second.at(-1)?.stage, 'done', 'a joining caller receives progress too');
    assert.equal(first.at(-1)?.stage, 'done');
    // after it finished, a new call starts a new sync
    const again = await joinStore.sync('joined', fixture.url);
    assert.equal(again.action, 'fetched');
    assert.equal(logs.filter((l) => l.msg === 'git clone started').length, 1);
  });

  test('a broken URL ends with GitSyncError and leaves no directory', async () => {
    const errStore = new GitStore({ rootPath: join(root, 'err-cache'), maxRepoSizeBytes: 50 * 2 ** 20, allowedProtocols: TEST_PROTOCOLS });
    const missing = `file://${join(root, 'does-not-exist.git')}`;
    await assertRejectsWith(errStore.sync('broken', missing), GitSyncError, 'NotFound', /^Repository file:\/\/.*does-not-exist\.git not found or not accessible/);
    const port = await closedPort();
    await assertRejectsWith(
      errStore.sync('broken', `http://127.0.0.1:${port}/x.git`),
      GitSyncError,
      'Unreachable',
      // No port state, address or connection detail reaches users (issue 10: SSRF oracle).
      new RegExp(`^Repository host of http://127\\.0\\.0\\.1:${port}/x\\.git is not reachable$`),
    );
    await assertRejectsWith(errStore.sync('broken', 'not a url'), GitSyncError, 'InvalidUrl', /is not a valid URL/);
    assert.equal(await errStore.exists('broken'), false);
    assert.deepEqual(await readdir(join(root, 'err-cache')), [], 'no clone and no temporary directory left');
    // the default store only accepts http(s)
    const strict = new GitStore({ rootPath: join(root, 'err-cache'), maxRepoSizeBytes: 1024 });
    await assertRejectsWith(strict.sync('broken', fixture.url), GitSyncError, 'InvalidUrl', /scheme "file" is not allowed/);
  });

  test('a sync that hangs ends with a Timeout error instead of staying stuck', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const hanging = createServer(() => {
      // accept the request and never answer
    });
    hanging.on('connection', (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const { port } = hanging.address() as AddressInfo;
    try {
      const slowStore = new GitStore({
        rootPath: join(root, 'timeout-cache'),
        maxRepoSizeBytes: 2 ** 20,
        allowedProtocols: TEST_PROTOCOLS,
        gitTimeoutMs: 800,
      });
      await assertRejectsWith(
        slowStore.sync('slow', `http://127.0.0.1:${port}/repo.git`),
        GitSyncError,
        'Timeout',
        new RegExp(`^Git clone of http://127\\.0\\.0\\.1:${port}/repo\\.git timed out after 1 s$`),
      );
      assert.deepEqual(await readdir(join(root, 'timeout-cache')), []);
      assert.equal(slowStore.isSyncing('slow'), false);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => hanging.close(() => resolve()));
    }
  });

  test('a repository over the size limit fails with GitSyncError and leaves no partial clone', async () => {
    const bigRoot = await makeTempDir();
    try {
      const big = await createFixtureRepository(bigRoot, 'big');
      await commitFiles(big.workPath, { 'data.bin': randomContent(400 * 1024) }, 'big blob');
      await git(big.workPath, 'push', '--quiet', 'origin', 'main');
      const limited = new GitStore({ rootPath: join(bigRoot, 'cache'), maxRepoSizeBytes: 200 * 1024, allowedProtocols: TEST_PROTOCOLS });
      await assertRejectsWith(limited.sync('big', big.url), GitSyncError, 'SizeLimit', /^Repository size 0\.\d\d MB exceeds the limit of 0\.20 MB$/);
      assert.deepEqual(await readdir(join(bigRoot, 'cache')), [], 'no clone and no temporary directory left');

      // a fetch that pushes an existing clone over the limit removes it entirely
      const small = await createFixtureRepository(bigRoot, 'small');
      await limited.sync('small', small.url);
      assert.ok(await limited.exists('small'));
      await commitFiles(small.workPath, { 'data.bin': randomContent(400 * 1024) }, 'big blob');
      await git(small.workPath, 'push', '--quiet', 'origin', 'main');
      await assertRejectsWith(limited.sync('small', small.url), GitSyncError, 'SizeLimit', /exceeds the limit of 0\.20 MB/);
      assert.equal(await limited.exists('small'), false);
      assert.deepEqual(await readdir(join(bigRoot, 'cache')), []);
    } finally {
      await removeDir(bigRoot);
    }
  });

  test('a corrupt clone is detected and cloned again', async () => {
    const corruptStore = new GitStore({ rootPath: join(root, 'corrupt-cache'), maxRepoSizeBytes: 50 * 2 ** 20, allowedProtocols: TEST_PROTOCOLS });
    await corruptStore.sync('c', fixture.url);
    await writeFile(join(root, 'corrupt-cache', 'c', 'HEAD'), 'garbage');
    const result = await corruptStore.sync('c', fixture.url);
    assert.equal(result.action, 'recloned');
    assert.equal((await corruptStore.readFile('c', fixture.main.c1, 'README.md'))?.toString(), README_V1);

    // objects removed behind git's back: the fetch fails as corrupt, the store re-clones
    await removeDir(join(root, 'corrupt-cache', 'c', 'objects', 'pack'));
    const healed = await corruptStore.sync('c', fixture.url);
    assert.equal(healed.action, 'recloned');
    assert.deepEqual(await corruptStore.branches('c'), ['dev', 'main']);
    assert.deepEqual((await readdir(join(root, 'corrupt-cache'))).sort(), ['c']);
  });

  test('remove deletes the clone; cleanupTemporary removes leftovers', async () => {
    const removeStore = new GitStore({ rootPath: join(root, 'rm-cache'), maxRepoSizeBytes: 50 * 2 ** 20, allowedProtocols: TEST_PROTOCOLS });
    await removeStore.sync('gone', fixture.url);
    await removeStore.remove('gone');
    assert.equal(await removeStore.exists('gone'), false);
    assert.equal(await removeStore.sizeOnDisk('gone'), 0);
    await assertRejectsWith(removeStore.branches('gone'), GitReadError, 'NotSynced');
    await writeFile(join(root, 'rm-cache', '.tmp-x-123'), 'leftover');
    assert.equal(await removeStore.cleanupTemporary(), 1);
    assert.deepEqual(await readdir(join(root, 'rm-cache')), []);
  });
});
