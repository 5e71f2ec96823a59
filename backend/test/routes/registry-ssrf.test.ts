/**
 * The registry cannot be used to reach internal hosts (issue 10.5): loopback, private, link-local
 * and metadata destinations are refused after DNS resolution and before any connection; errors
 * say nothing about the network; the admin's allow rules (or the operator's trusted hosts) let a
 * private git server in, and deny/allow rules decide which hosts users may register; the address
 * that passed the check is the one git uses (no DNS rebinding).
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DestinationGuard, DestinationRefusedError, isForbiddenAddress } from '../../src/git/destinations.ts';
import { GitStore } from '../../src/git/index.ts';
import { startPlatformStub, startRegistryBackend, type PlatformStub, type RegistryBackend, type TestUser } from '../jobs/registry-test-kit.ts';
import { createFixtureRepository, makeTempDir, removeDir, startGitHttpServer, type GitHttpServer } from '../git/helpers.ts';

describe('isForbiddenAddress', () => {
  const cases: Array<[string, boolean]> = [
    ['127.0.0.1', true], ['127.8.9.10', true], ['10.1.2.3', true], ['172.16.0.1', true], ['172.31.255.255', true], ['192.168.1.1', true],
    ['169.254.169.254', true], ['100.64.0.1', true], ['0.0.0.0', true], ['224.0.0.1', true], ['255.255.255.255', true],
    ['::1', true], ['::', true], ['fd00:ec2::254', true], ['fc00::1', true], ['fe80::1', true], ['::ffff:127.0.0.1', true], ['::ffff:10.0.0.1', true],
    ['64:ff9b::a00:1', true], ['not-an-ip', true],
    ['8.8.8.8', false], ['140.82.112.3', false], ['172.32.0.1', false], ['2606:4700::1111', false], ['::ffff:8.8.8.8', false],
  ];
  for (const [address, forbidden] of cases) {
    test(`${address} -> ${forbidden ? 'refused' : 'allowed'}`, () => assert.equal(isForbiddenAddress(address), forbidden));
  }
});

describe('the destination guard', () => {
  const none = { exact: new Set<string>(), domains: [] as string[] };
  test('refuses a name that resolves to a private address, even among public ones (rebinding-style answers)', async () => {
    const guard = new DestinationGuard(() => none, async () => [{ address: '140.82.112.3', family: 4 }, { address: '10.0.0.7', family: 4 }]);
    await assert.rejects(guard.check('https://git.example.com/a/b.git'), (err: unknown) => {
      assert.ok(err instanceof DestinationRefusedError);
      assert.doesNotMatch((err as Error).message, /10\.0\.0\.7|140\.82/, 'the addresses are not disclosed');
      return true;
    });
    const ok = new DestinationGuard(() => none, async () => [{ address: '140.82.112.3', family: 4 }]);
    assert.deepEqual(await ok.check('https://git.example.com/a/b.git'), { host: 'git.example.com', port: 443, address: '140.82.112.3', family: 4 });
    assert.equal(await ok.check('file:///srv/repo.git'), null, 'no network for file URLs');
  });
  test('trusted hosts and allowed domains (with subdomains) may be private', async () => {
    const guard = new DestinationGuard(() => ({ exact: new Set(['git.local:8080']), domains: ['corp.example'] }), async () => [{ address: '10.0.0.5', family: 4 }]);
    assert.ok(await guard.check('http://git.local:8080/a/b.git'));
    await assert.rejects(guard.check('http://git.local:9090/a/b.git'), DestinationRefusedError, 'only the trusted port');
    assert.ok(await guard.check('https://gitlab.corp.example/a/b.git'));
    await assert.rejects(guard.check('https://corp.example.evil.com/a/b.git'), DestinationRefusedError);
  });
});

describe('registry creation and sync', () => {
  let root = '';
  let t: RegistryBackend;
  let admin: TestUser;
  let user: TestUser;
  let probe: Server;
  let probeHits = 0;
  let gitServer: GitHttpServer;
  let stub: PlatformStub;

  before(async () => {
    root = await makeTempDir('pu-ssrf-');
    // A "internal service": it must never see a request.
    probe = createServer((_req, res) => {
      probeHits += 1;
      res.end('internal');
    });
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    await createFixtureRepository(join(root, 'served', 'team'), 'tool');
    gitServer = await startGitHttpServer(join(root, 'served'));
    // No trusted hosts: the default a real instance has.
    t = await startRegistryBackend('ssrf', { PU_REGISTRY_ALLOWED_PRIVATE_HOSTS: '' });
    // The GitLab API of the local git server (on loopback too: allowed by the same admin rule).
    stub = await startPlatformStub();
    stub.add(`${gitServer.url}/team/tool.git`, { sizeBytes: 10_000 });
    t.backend.app.registrySync.platformApi.baseUrl = stub.url;
    admin = await t.user('ssrf_admin');
    user = await t.user('ssrf_user');
  });
  after(async () => {
    await t?.close();
    await stub?.close();
    await gitServer?.close();
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await removeDir(root);
  });

  const register = (token: string, url: string) => t.call('POST', '/repository_registry', { token, body: { platform: 'Gitlab', repository_url: url, is_public_repository: true } });

  test('loopback, private, link-local and metadata URLs are refused before any connection, without network details', async () => {
    const port = (probe.address() as AddressInfo).port;
    for (const url of [
      `http://127.0.0.1:${port}/team/tool.git`,
      `http://localhost:${port}/team/tool.git`,
      `http://[::1]:${port}/team/tool.git`,
      'http://169.254.169.254/latest/meta-data.git',
      'http://10.0.0.1/team/tool.git',
      'http://192.168.1.1:5432/team/tool.git',
    ]) {
      const res = await register(user.token, url);
      assert.equal(res.status, 422, `${url}: ${res.raw}`);
      assert.match(res.body.detail, /not reachable from this instance/);
      assert.doesNotMatch(res.body.detail, /ECONNREFUSED|refused|timed out|port \d|\d+\.\d+\.\d+\.\d+:\d/i);
    }
    assert.equal(probeHits, 0, 'the internal service saw no request');
    assert.equal((await t.backend.deps.pg.query('SELECT count(*)::int AS n FROM repository_registry')).rows[0].n, 0, 'nothing registered');
  });

  test('an admin allow rule lets a private git server in; deny rules and allow-list mode decide which hosts users may register', async () => {
    const gitHost = new URL(gitServer.url).hostname; // 127.0.0.1
    assert.equal((await register(user.token, `${gitServer.url}/team/tool.git`)).status, 422, 'refused before the rule');
    const notAdmin = await t.call('POST', '/repository_registry/domain_rules', { token: user.token, body: { domain: gitHost, rule: 'allow' } });
    assert.equal(notAdmin.status, 403);
    const allow = await t.call('POST', '/repository_registry/domain_rules', { token: admin.token, body: { domain: gitHost, rule: 'allow' } });
    assert.equal(allow.status, 201, allow.raw);
    const created = await register(user.token, `${gitServer.url}/team/tool.git`);
    assert.equal(created.status, 201, created.raw);
    assert.equal(created.body.sync_status, 'Updated', created.raw);
    // Allow-list mode: with an allow rule present, other hosts are refused by the rule first.
    const other = await register(user.token, 'https://github.com/owner/name.git');
    assert.equal(other.status, 422);
    assert.match(other.body.detail, /not allowed on this instance \(allowed: 127\.0\.0\.1\)/);
    // A deny rule wins over an allow rule of a parent domain.
    await t.call('POST', '/repository_registry/domain_rules', { token: admin.token, body: { domain: 'example.org', rule: 'allow' } });
    await t.call('POST', '/repository_registry/domain_rules', { token: admin.token, body: { domain: 'bad.example.org', rule: 'deny' } });
    const denied = await register(user.token, 'https://git.bad.example.org/a/b.git');
    assert.match(denied.body.detail, /Repositories on git\.bad\.example\.org are not allowed on this instance/);
    const rules = await t.call('GET', '/repository_registry/domain_rules', { token: admin.token });
    assert.deepEqual(rules.body.map((r: { domain: string; rule: string }) => `${r.rule}:${r.domain}`), ['allow:127.0.0.1', 'deny:bad.example.org', 'allow:example.org']);
    for (const domain of ['127.0.0.1', 'bad.example.org', 'example.org']) assert.equal((await t.call('DELETE', `/repository_registry/domain_rules/${domain}`, { token: admin.token })).status, 204);
    assert.equal((await t.call('POST', '/repository_registry/domain_rules', { token: admin.token, body: { domain: 'not a domain', rule: 'allow' } })).status, 422);
  });

  test('git connects to the address that passed the check (pinned), not to a second DNS answer', async () => {
    // "git.pinned.test" does not exist in DNS: the clone works only because the checked address is pinned.
    const port = new URL(gitServer.url).port;
    const guard = new DestinationGuard(() => ({ exact: new Set(['git.pinned.test']), domains: [] }), async () => [{ address: '127.0.0.1', family: 4 }]);
    const store = new GitStore({ rootPath: join(root, 'pinned'), maxRepoSizeBytes: 50 * 2 ** 20, destinations: guard });
    const result = await store.sync('pinned', `http://git.pinned.test:${port}/team/tool.git`);
    assert.ok(['cloned', 'fetched', 'recloned'].includes(result.action));
    const refusing = new GitStore({ rootPath: join(root, 'refused'), maxRepoSizeBytes: 50 * 2 ** 20, destinations: new DestinationGuard(() => ({ exact: new Set(), domains: [] }), async () => [{ address: '127.0.0.1', family: 4 }]) });
    await assert.rejects(refusing.sync('refused', `http://git.pinned.test:${port}/team/tool.git`), /git\.pinned\.test is not reachable from this instance/);
  });
});
