/**
 * GitHub / GitLab clients against a local Fastify server speaking the documented endpoints:
 * GitHub `GET /repos/{owner}/{repo}` and `/releases` (Basic auth, 403 when rate limited),
 * GitLab `GET /api/v4/projects/{id or url-encoded path}[?statistics=true]` and
 * `/projects/{id}/releases?page&per_page` (PRIVATE-TOKEN header).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  GitPlatformClientError,
  createPlatformClient,
  defaultApiBaseUrl,
  repositoryPath,
} from '../../src/git/platform-clients.js';
import { closedPort } from './helpers.js';

const GH_USER = 'octo';
const GH_PAT = 'ghp_T0kenForTests';
const INSTANCE = { username: 'instance-bot', patToken: 'ghp_InstanceToken' };
const GL_PAT = 'glpat-SecretForTests';
const GITLAB_RELEASES = 230; // 3 pages of 100, 100, 30

function basic(username: string, token: string): string {
  return `Basic ${Buffer.from(`${username}:${token}`).toString('base64')}`;
}

async function rejectsWith(promise: Promise<unknown>, kind: string, message: string, secret?: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof GitPlatformClientError, String(error));
    assert.equal(error.kind, kind);
    assert.equal(error.message, message);
    if (secret) assert.ok(!error.message.includes(secret));
    return true;
  });
}

describe('platform clients', () => {
  let server: FastifyInstance;
  let base: string;
  const seen: { path: string; auth?: string; privateToken?: string; accept?: string; userAgent?: string }[] = [];

  before(async () => {
    server = Fastify();
    server.addHook('onRequest', async (request) => {
      seen.push({
        path: request.url,
        auth: request.headers.authorization,
        privateToken: request.headers['private-token'] as string | undefined,
        accept: request.headers.accept,
        userAgent: request.headers['user-agent'],
      });
    });

    // ---------------- GitHub
    const githubRepos: Record<string, { id: number; size: number; private: boolean }> = {
      'octo/public-unit': { id: 1, size: 2048, private: false },
      'octo/private-unit': { id: 2, size: 10, private: true },
    };
    const githubAuthorized = (auth: string | undefined): boolean =>
      auth === basic(GH_USER, GH_PAT) || auth === basic(INSTANCE.username, INSTANCE.patToken);
    server.get<{ Params: { owner: string; repo: string } }>('/repos/:owner/:repo', async (request, reply) => {
      const { owner, repo } = request.params;
      if (owner === 'limited') return reply.code(403).send({ message: 'API rate limit exceeded' });
      const auth = request.headers.authorization;
      if (auth !== undefined && !githubAuthorized(auth)) return reply.code(401).send({ message: 'Bad credentials' });
      const found = githubRepos[`${owner}/${repo}`];
      if (!found || (found.private && !githubAuthorized(auth))) return reply.code(404).send({ message: 'Not Found' });
      return { id: found.id, full_name: `${owner}/${repo}`, size: found.size };
    });
    server.get<{ Params: { owner: string; repo: string }; Querystring: { page?: string; per_page?: string } }>(
      '/repos/:owner/:repo/releases',
      async (request) => {
        const page = Number(request.query.page ?? 1);
        const perPage = Number(request.query.per_page ?? 30);
        const all = Array.from({ length: 105 }, (_, i) => ({
          tag_name: `1.0.${i}`,
          assets: [
            { name: 'linux-amd64', browser_download_url: `https://downloads.example.org/1.0.${i}/linux-amd64` },
            { name: 'esp32', browser_download_url: `https://downloads.example.org/1.0.${i}/esp32` },
          ],
        }));
        return all.slice((page - 1) * perPage, page * perPage);
      },
    );

    // ---------------- GitLab
    const project = { id: 42, path_with_namespace: 'group/sub/unit' };
    const gitlabProject = (id: string): typeof project | null =>
      id === '42' || id === 'group/sub/unit' ? project : null;
    server.get<{ Params: { id: string }; Querystring: { statistics?: string } }>('/api/v4/projects/:id', async (request, reply) => {
      const found = gitlabProject(request.params.id);
      if (request.headers['private-token'] !== undefined && request.headers['private-token'] !== GL_PAT) {
        return reply.code(401).send({ message: '401 Unauthorized' });
      }
      if (!found) return reply.code(404).send({ message: '404 Project Not Found' });
      const withStatistics = request.query.statistics === 'true' && request.headers['private-token'] === GL_PAT;
      return withStatistics ? { ...found, statistics: { repository_size: 123456 } } : found;
    });
    server.get<{ Params: { id: string }; Querystring: { page: string; per_page: string } }>(
      '/api/v4/projects/:id/releases',
      async (request) => {
        const page = Number(request.query.page);
        const perPage = Number(request.query.per_page);
        const all = Array.from({ length: GITLAB_RELEASES }, (_, i) => ({
          tag_name: `v${i}`,
          assets: {
            sources: [
              { format: 'zip', url: `https://gitlab.example.org/group/sub/unit/-/archive/v${i}/unit-v${i}.zip` },
              { format: 'tar.gz', url: `https://gitlab.example.org/group/sub/unit/-/archive/v${i}/unit-v${i}.tar.gz` },
            ],
            links: [{ name: 'esp32-generic', url: `https://gitlab.example.org/packages/v${i}/esp32.bin` }],
          },
        }));
        return all.slice((page - 1) * perPage, page * perPage);
      },
    );
    server.get('/broken/api/v4/projects/:id', async (_request, reply) => reply.type('application/json').send('{not json'));

    base = await server.listen({ port: 0, host: '127.0.0.1' });
  });

  after(async () => {
    await server.close();
  });

  test('API base URLs and repository paths are derived from the repository URL', () => {
    assert.equal(defaultApiBaseUrl('Github', 'https://github.com/octo/unit.git'), 'https://api.github.com');
    assert.equal(defaultApiBaseUrl('Github', 'https://ghe.example.org/octo/unit.git'), 'https://ghe.example.org/api/v3');
    assert.equal(defaultApiBaseUrl('Gitlab', 'https://user:pat@git.example.org/group/sub/unit.git'), 'https://git.example.org/api/v4');
    assert.equal(repositoryPath('https://git.example.org/group/sub/unit.git'), 'group/sub/unit');
    assert.equal(repositoryPath('https://github.com/octo/my.github.io.git'), 'octo/my.github.io', 'only the .git suffix is removed');
    assert.throws(() => repositoryPath('https://github.com/only-owner.git'), /owner and the repository name/);
    assert.throws(() => createPlatformClient('Bitbucket' as 'Github', { repositoryUrl: 'https://x.org/a/b.git' }), /Unknown git platform/);
  });

  describe('GitHub', () => {
    const client = (repositoryUrl: string, extra: Parameters<typeof createPlatformClient>[1] extends infer O ? Partial<O> : never = {}) =>
      createPlatformClient('Github', { repositoryUrl, apiBaseUrl: base, ...extra });

    test('repo size in bytes (KB × 1024), with Basic auth and the v3 Accept header', async () => {
      seen.length = 0;
      const size = await client('https://github.com/octo/private-unit.git', { credentials: { username: GH_USER, patToken: GH_PAT } }).getRepoSize();
      assert.equal(size, 10 * 1024);
      assert.equal(seen[0]?.path, '/repos/octo/private-unit');
      assert.equal(seen[0]?.auth, basic(GH_USER, GH_PAT));
      assert.equal(seen[0]?.accept, 'application/vnd.github.v3+json');
      assert.equal(seen[0]?.userAgent, 'pepeunit-ts');
    });

    test('public repositories use the instance token when configured, or no auth at all', async () => {
      seen.length = 0;
      assert.equal(await client('https://github.com/octo/public-unit.git', { instanceToken: INSTANCE }).getRepoSize(), 2048 * 1024);
      assert.equal(seen[0]?.auth, basic(INSTANCE.username, INSTANCE.patToken));
      seen.length = 0;
      assert.equal(await client('https://github.com/octo/public-unit.git').getRepoSize(), 2048 * 1024);
      assert.equal(seen[0]?.auth, undefined);
    });

    test('token validation', async () => {
      assert.equal(await client('https://github.com/octo/private-unit.git', { credentials: { username: GH_USER, patToken: GH_PAT } }).isValidToken(), true);
      assert.equal(await client('https://github.com/octo/private-unit.git', { credentials: { username: GH_USER, patToken: 'wrong' } }).isValidToken(), false);
      assert.equal(await client('https://github.com/octo/private-unit.git').isValidToken(), false);
    });

    test('403 ⇒ "Rate limit external API"; 401/404 ⇒ "Invalid Credentials"; no secret in errors', async () => {
      await rejectsWith(client('https://github.com/limited/repo.git').getRepoSize(), 'RateLimit', 'Rate limit external API');
      await rejectsWith(client('https://github.com/limited/repo.git').isValidToken(), 'RateLimit', 'Rate limit external API');
      await rejectsWith(
        client('https://github.com/octo/private-unit.git', { credentials: { username: GH_USER, patToken: 'ghp_wrong_secret' } }).getRepoSize(),
        'InvalidCredentials',
        'Invalid Credentials',
        'ghp_wrong_secret',
      );
      await rejectsWith(client('https://github.com/octo/missing.git').getRepoSize(), 'InvalidCredentials', 'Invalid Credentials');
    });

    test('releases: every page, tag → [(asset name, download url)]', async () => {
      seen.length = 0;
      const releases = await client('https://github.com/octo/public-unit.git').getReleases();
      assert.equal(Object.keys(releases).length, 105);
      assert.deepEqual(releases['1.0.104'], [
        ['linux-amd64', 'https://downloads.example.org/1.0.104/linux-amd64'],
        ['esp32', 'https://downloads.example.org/1.0.104/esp32'],
      ]);
      assert.deepEqual(
        seen.map((s) => s.path),
        ['/repos/octo/public-unit/releases?per_page=100&page=1', '/repos/octo/public-unit/releases?per_page=100&page=2'],
      );
    });
  });

  describe('GitLab', () => {
    const repositoryUrl = 'https://gitlab.example.org/group/sub/unit.git';
    const client = (credentials: { username: string; patToken: string } | null = null, apiBaseUrl = `${base}/api/v4`) =>
      createPlatformClient('Gitlab', { repositoryUrl, apiBaseUrl, credentials });

    test('size from statistics with PRIVATE-TOKEN; 0 without credentials (GitLab hides statistics)', async () => {
      seen.length = 0;
      assert.equal(await client({ username: 'u', patToken: GL_PAT }).getRepoSize(), 123456);
      assert.equal(seen[0]?.path, '/api/v4/projects/group%2Fsub%2Funit?statistics=true');
      assert.equal(seen[0]?.privateToken, GL_PAT);
      assert.equal(seen[0]?.auth, undefined);
      assert.equal(await client().getRepoSize(), 0);
    });

    test('token validation and invalid credentials', async () => {
      assert.equal(await client({ username: 'u', patToken: GL_PAT }).isValidToken(), true);
      assert.equal(await client({ username: 'u', patToken: 'glpat-wrong-one' }).isValidToken(), false);
      await rejectsWith(client({ username: 'u', patToken: 'glpat-wrong-one' }).getRepoSize(), 'InvalidCredentials', 'Invalid Credentials', 'glpat-wrong-one');
      await rejectsWith(
        createPlatformClient('Gitlab', { repositoryUrl: 'https://gitlab.example.org/group/other.git', apiBaseUrl: `${base}/api/v4` }).getReleases(),
        'InvalidCredentials',
        'Invalid Credentials',
      );
    });

    test('releases are paginated until a short page: sources then links', async () => {
      seen.length = 0;
      const releases = await client({ username: 'u', patToken: GL_PAT }).getReleases();
      assert.equal(Object.keys(releases).length, GITLAB_RELEASES);
      assert.deepEqual(releases.v229, [
        ['zip', 'https://gitlab.example.org/group/sub/unit/-/archive/v229/unit-v229.zip'],
        ['tar.gz', 'https://gitlab.example.org/group/sub/unit/-/archive/v229/unit-v229.tar.gz'],
        ['esp32-generic', 'https://gitlab.example.org/packages/v229/esp32.bin'],
      ]);
      assert.deepEqual(
        seen.map((s) => s.path),
        [
          '/api/v4/projects/group%2Fsub%2Funit',
          '/api/v4/projects/42/releases?page=1&per_page=100',
          '/api/v4/projects/42/releases?page=2&per_page=100',
          '/api/v4/projects/42/releases?page=3&per_page=100',
        ],
      );
      assert.ok(seen.every((s) => s.privateToken === GL_PAT));
    });

    test('unreachable API and invalid JSON give clear errors', async () => {
      const port = await closedPort();
      await rejectsWith(client(null, `http://127.0.0.1:${port}/api/v4`).getRepoSize(), 'Unavailable', 'Gitlab API is unreachable');
      await rejectsWith(client(null, `${base}/broken/api/v4`).getRepoSize(), 'InvalidResponse', 'Gitlab API returned an invalid JSON response');
    });
  });
});
