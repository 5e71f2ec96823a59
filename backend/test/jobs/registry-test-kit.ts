/**
 * Shared fixtures of the registry/repos/job tests: the real backend (@pepeunit/tests/backend, inject) on
 * a fresh database with an embedded broker, users, and a local HTTP server that speaks the
 * documented GitHub (`GET /repos/{owner}/{repo}`, `/releases`) and GitLab
 * (`GET /api/v4/projects/{id|path}`, `/projects/{id}/releases`) endpoints. Git remotes are
 * local bare repositories (see ../git/helpers.ts).
 */
import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLogger, type Logger } from '@pepeunit/common';
import type { RunningBackend } from '@pepeunit/backend';
import { repositoryPath } from '../../src/git/platform-clients.js';
import { testLogger, type TestDatabases } from '@pepeunit/tests/harness';
import { startTestBackend } from '@pepeunit/tests/backend';

export const API = '/pepeunit/api/v1';

export interface Call {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  raw: string;
}

export interface TestUser {
  uuid: string;
  token: string;
  login: string;
}

export interface RegistryBackend {
  backend: RunningBackend;
  db: TestDatabases;
  saveRepoPath: string;
  /** Every response body seen by `call` (for secret greps). */
  responses: string[];
  call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, opts?: { token?: string; body?: unknown }): Promise<Call>;
  user(login: string): Promise<TestUser>;
  close(): Promise<void>;
}

/** A pino logger writing JSON lines into `lines` (level debug unless given). */
export function bufferLogger(level = 'debug'): { logger: Logger; text(): string } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk));
      callback();
    },
  });
  return { logger: createLogger('backend-test', { level, destination }), text: () => chunks.join('') };
}

export async function startRegistryBackend(label: string, env: NodeJS.ProcessEnv = {}, logger: Logger = testLogger): Promise<RegistryBackend> {
  const t = await startTestBackend({
    label,
    logger,
    env: {
      PU_GIT_ALLOWED_PROTOCOLS: 'https,http,file',
      PU_MIN_INTERVAL_SYNC_REPOSITORY: '0',
      // The tests' local git and platform API servers listen on loopback: allowed explicitly.
      PU_REGISTRY_ALLOWED_PRIVATE_HOSTS: '127.0.0.1',
      ...env,
    },
  });
  const backend = t.backend;
  await backend.registrySync.startup; // start-up tasks (stuck rows, missing clones) done before the test acts
  const responses: string[] = [];
  const call: RegistryBackend['call'] = async (method, url, opts = {}) => {
    const res = await t.inject(method, url, opts);
    responses.push(res.body);
    let body: unknown = null;
    try {
      body = res.body ? res.json() : null;
    } catch {
      body = res.body;
    }
    return { status: res.statusCode, body, raw: res.body };
  };
  const user = async (login: string): Promise<TestUser> => {
    const password = 'Passw0rd!x';
    const created = await call('POST', '/users', { body: { login, password } });
    if (created.status !== 201) throw new Error(`user ${login}: ${created.raw}`);
    const auth = await call('POST', '/users/auth', { body: { credentials: login, password } });
    return { uuid: created.body.uuid, token: auth.body.token, login };
  };
  return {
    backend,
    db: t.db,
    saveRepoPath: t.config.saveRepoPath,
    responses,
    call,
    user,
    close: () => t.close(),
  };
}

/** Visible (non-temporary) entries of the clone directory. */
export function cloneDirectories(entries: string[]): string[] {
  return entries.filter((name) => !name.startsWith('.')).sort();
}

export interface StubProject {
  id: number;
  /** GitHub `size` is KB; GitLab `statistics.repository_size` is bytes (only shown with a token). */
  sizeBytes: number;
  /** Private projects answer 404 unless the right credentials are sent. */
  auth?: { username: string; patToken: string };
  /** `{tag: [[asset name, url], ...]}` */
  releases?: Record<string, [string, string][]>;
}

export interface PlatformStub {
  url: string;
  /** Projects by repository path (`repositoryPath(url)`, e.g. `owner/name`). */
  projects: Map<string, StubProject>;
  /** Registers a project for a repository URL. */
  add(repositoryUrl: string, project: Omit<StubProject, 'id'>): StubProject;
  requests: { path: string; authorization?: string; privateToken?: string }[];
  close(): Promise<void>;
}

/** A local server speaking the GitHub and GitLab REST endpoints the registry uses (§6.6). */
export async function startPlatformStub(): Promise<PlatformStub> {
  const projects = new Map<string, StubProject>();
  const byId = new Map<number, string>();
  const requests: PlatformStub['requests'] = [];
  const server: FastifyInstance = Fastify();
  server.addHook('onRequest', async (request) => {
    requests.push({
      path: request.url,
      authorization: request.headers.authorization,
      privateToken: request.headers['private-token'] as string | undefined,
    });
  });
  const basic = (auth: { username: string; patToken: string }) => `Basic ${Buffer.from(`${auth.username}:${auth.patToken}`).toString('base64')}`;

  // GitHub: /repos/{owner}/{repo}[/releases]; the owner part may hold several segments for file:// URLs
  server.get<{ Params: { '*': string }; Querystring: { page?: string; per_page?: string } }>('/repos/*', async (request, reply) => {
    let path = request.params['*'];
    const wantsReleases = path.endsWith('/releases');
    if (wantsReleases) path = path.slice(0, -'/releases'.length);
    const project = projects.get(decodeURIComponent(path));
    if (!project) return reply.code(404).send({ message: 'Not Found' });
    if (project.auth && request.headers.authorization !== basic(project.auth)) {
      return reply.code(request.headers.authorization ? 401 : 404).send({ message: 'Bad credentials' });
    }
    if (!wantsReleases) return { id: project.id, full_name: path, size: Math.ceil(project.sizeBytes / 1024) };
    const page = Number(request.query.page ?? 1);
    const perPage = Number(request.query.per_page ?? 30);
    const releases = Object.entries(project.releases ?? {}).map(([tag, assets]) => ({
      tag_name: tag,
      assets: assets.map(([name, url]) => ({ name, browser_download_url: url })),
    }));
    return releases.slice((page - 1) * perPage, page * perPage);
  });

  // GitLab: /api/v4/projects/{id or url-encoded path}[?statistics=true], /api/v4/projects/{id}/releases
  const gitlabProject = (idOrPath: string): StubProject | undefined => {
    const decoded = decodeURIComponent(idOrPath);
    return /^\d+$/.test(decoded) ? projects.get(byId.get(Number(decoded)) ?? '') : projects.get(decoded);
  };
  const gitlabAuthorized = (project: StubProject, token: unknown) => !project.auth || token === project.auth.patToken;
  server.get<{ Params: { id: string }; Querystring: { statistics?: string } }>('/api/v4/projects/:id', async (request, reply) => {
    const project = gitlabProject(request.params.id);
    if (!project || !gitlabAuthorized(project, request.headers['private-token'])) return reply.code(404).send({ message: '404 Project Not Found' });
    const body: Record<string, unknown> = { id: project.id };
    if (request.query.statistics === 'true' && request.headers['private-token']) body.statistics = { repository_size: project.sizeBytes };
    return body;
  });
  server.get<{ Params: { id: string }; Querystring: { page?: string; per_page?: string } }>('/api/v4/projects/:id/releases', async (request, reply) => {
    const project = gitlabProject(request.params.id);
    if (!project || !gitlabAuthorized(project, request.headers['private-token'])) return reply.code(404).send({ message: '404 Project Not Found' });
    const page = Number(request.query.page ?? 1);
    const perPage = Number(request.query.per_page ?? 20);
    const releases = Object.entries(project.releases ?? {}).map(([tag, assets]) => ({
      tag_name: tag,
      assets: { sources: [], links: assets.map(([name, url]) => ({ name, url })) },
    }));
    return releases.slice((page - 1) * perPage, page * perPage);
  });

  const url = await server.listen({ host: '127.0.0.1', port: 0 });
  let nextId = 1;
  return {
    url,
    projects,
    requests,
    add(repositoryUrl, project) {
      const path = repositoryPath(repositoryUrl);
      const stored: StubProject = { id: nextId++, ...project };
      projects.set(path, stored);
      byId.set(stored.id, path);
      return stored;
    },
    close: () => server.close(),
  };
}
