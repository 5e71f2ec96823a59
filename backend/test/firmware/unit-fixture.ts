/**
 * Shared set-up of the units / unit-nodes route tests: a clean database, the embedded broker,
 * the real backend (file:// git allowed), three users, and a local bare repository holding a
 * sample unit registered as a registry entry + Repo (rows written with SQL, clone synced into
 * the GitStore). The repository:
 *
 *   main:   v1 (tag v1.0.0) ─ v2            v2 adds log_sync, new_input/pepeunit, NEW_KEY
 *   bare:   v1 ─ bare                       no input/output topics (a unit without nodes)
 *   broken: v1 ─ broken                     env_example.json is not JSON
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import mqtt from 'mqtt';
import type { EmbeddedBroker } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { testServices, type TestDatabases } from '@pepeunit/tests/harness';
import { startTestBackend } from '@pepeunit/tests/backend';
import { waitFor } from '@pepeunit/tests/wait';
import { repoStorageKey } from '../../src/services/repo-storage.ts';
import { git } from '../git/helpers.ts';


// Start (or find) Postgres and ClickHouse at import time: testServices() registers its
// `after(close)` where it is first called, and called from inside a `before` hook node:test
// would run that `after` right after the hook, stopping ClickHouse before the tests run.
await testServices();

export const API = '/pepeunit/api/v1';
export const DOMAIN = 'test.pepeunit.local';

export const SCHEMA_V1 = {
  input_base_topic: ['update/pepeunit', 'env_update/pepeunit', 'schema_update/pepeunit'],
  output_base_topic: ['state/pepeunit', 'log/pepeunit'],
  input_topic: ['set_fan_state/pepeunit', 'raw_input'],
  output_topic: ['current_temp/pepeunit', 'raw_output'],
};
export const SCHEMA_V2 = {
  input_base_topic: ['update/pepeunit', 'env_update/pepeunit', 'schema_update/pepeunit', 'log_sync/pepeunit'],
  output_base_topic: ['state/pepeunit', 'log/pepeunit'],
  input_topic: ['set_fan_state/pepeunit', 'new_input/pepeunit'],
  output_topic: ['current_temp/pepeunit', 'raw_output'],
};
export const ENV_V1 = { WIFI_SSID: 'ssid', WIFI_PASS: 'pass', PWM_FAN_PIN: 4, PU_DOMAIN: 'example.com', PU_MIN_LOG_LEVEL: 'Info' };
export const ENV_V2 = { ...ENV_V1, NEW_KEY: 1 };
export const PEPEIGNORE = 'README.md\nLICENSE\npepeunit.toml\ndocs/\n*_example.json\n.pepeignore\n';

export interface SampleRepository {
  url: string;
  v1: string;
  v2: string;
  bare: string;
  broken: string;
}

async function commit(work: string, files: Record<string, string>, message: string): Promise<string> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(work, path)), { recursive: true });
    await writeFile(join(work, path), content);
  }
  await git(work, 'add', '--all');
  await git(work, 'commit', '--quiet', '-m', message);
  return git(work, 'rev-parse', 'HEAD');
}

export async function createSampleRepository(root: string): Promise<SampleRepository> {
  const bare = join(root, 'unit.git');
  const work = join(root, 'unit-work');
  await mkdir(work, { recursive: true });
  await git(root, 'init', '--bare', '--quiet', '--initial-branch=main', bare);
  await git(work, 'init', '--quiet', '--initial-branch=main');
  const v1 = await commit(
    work,
    {
      'schema_example.json': JSON.stringify(SCHEMA_V1, null, 2),
      'env_example.json': JSON.stringify(ENV_V1, null, 2),
      'pepeunit.toml': '[general]\nname = "Fan"\n',
      'README.md': '# Fan\n',
      LICENSE: 'AGPL\n',
      '.pepeignore': PEPEIGNORE,
      'main.py': 'print("fan")\n',
      'lib/util.py': 'X = 1\n',
      'docs/guide.md': 'guide\n',
    },
    'v1',
  );
  await git(work, 'tag', 'v1.0.0');
  await git(work, 'checkout', '--quiet', '-b', 'bare');
  const bareCommit = await commit(work, { 'schema_example.json': JSON.stringify({ ...SCHEMA_V1, input_topic: [], output_topic: [] }) }, 'no nodes');
  await git(work, 'checkout', '--quiet', 'main');
  await git(work, 'checkout', '--quiet', '-b', 'broken');
  const broken = await commit(work, { 'env_example.json': '{"WIFI_SSID": ' }, 'broken env');
  await git(work, 'checkout', '--quiet', 'main');
  const v2 = await commit(work, { 'schema_example.json': JSON.stringify(SCHEMA_V2, null, 2), 'env_example.json': JSON.stringify(ENV_V2, null, 2) }, 'v2');
  await git(work, 'push', '--quiet', bare, 'main', 'bare', 'broken');
  await git(work, 'push', '--quiet', bare, '--tags');
  return { url: `file://${bare}`, v1, v2, bare: bareCommit, broken };
}

export interface TestUser {
  uuid: string;
  token: string;
  login: string;
}

export interface UnitsTestEnv {
  db: TestDatabases;
  backend: RunningBackend;
  broker: EmbeddedBroker;
  root: string;
  sample: SampleRepository;
  admin: TestUser;
  owner: TestUser;
  other: TestUser;
  call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, opts?: { token?: string; body?: unknown }): Promise<{ status: number; body: any; raw: Buffer; headers: Record<string, unknown> }>;
  registerRepo(opts: { creator: TestUser; name: string; visibility?: string; defaultBranch?: string | null; auto?: boolean; onlyTag?: boolean; defaultCommit?: string | null }): Promise<{ registryUuid: string; repoUuid: string }>;
  subscribe(filter: string): Promise<{ messages: { topic: string; payload: string }[]; waitFor(count: number, ms?: number): Promise<void>; close(): Promise<void> }>;
  close(): Promise<void>;
}

export async function startUnitsEnv(label: string, overrides: NodeJS.ProcessEnv = {}): Promise<UnitsTestEnv> {
  const root = await mkdtemp(join(tmpdir(), `pu-${label}-`));
  const sample = await createSampleRepository(root);
  const t = await startTestBackend({
    label,
    env: {
      PU_GIT_ALLOWED_PROTOCOLS: 'https,http,file',
      PU_SAVE_REPO_PATH: join(root, 'repos'),
      ...overrides,
    },
  });
  const { backend, broker, db } = t;

  const call: UnitsTestEnv['call'] = async (method, url, opts = {}) => {
    const res = await t.inject(method, url, opts);
    let body: unknown = null;
    const type = String(res.headers['content-type'] ?? '');
    if (res.body && type.includes('json')) body = res.json();
    return { status: res.statusCode, body, raw: res.rawPayload, headers: res.headers };
  };

  const makeUser = async (login: string): Promise<TestUser> => {
    const created = await call('POST', '/users', { body: { login, password: 'Passw0rd!x' } });
    if (created.status !== 201) throw new Error(`user ${login}: ${JSON.stringify(created.body)}`);
    const auth = await call('POST', '/users/auth', { body: { credentials: login, password: 'Passw0rd!x' } });
    return { uuid: created.body.uuid, token: auth.body.token, login };
  };
  const admin = await makeUser('admin_user');
  const owner = await makeUser('owner_user');
  const other = await makeUser('other_user');

  const registerRepo: UnitsTestEnv['registerRepo'] = async (opts) => {
    const pg = backend.deps.pg;
    const existing = await pg.query<{ uuid: string }>('SELECT uuid FROM repository_registry WHERE repository_url = $1', [sample.url]);
    let registryUuid = existing.rows[0]?.uuid;
    if (!registryUuid) {
      registryUuid = randomUUID();
      await pg.query(
        `INSERT INTO repository_registry (uuid, platform, repository_url, is_public_repository, local_repository_size, sync_status,
                                          create_datetime, last_update_datetime, creator_uuid)
         VALUES ($1, 'Github', $2, true, 0, 'Updated', now(), now(), $3)`,
        [registryUuid, sample.url, opts.creator.uuid],
      );
      await backend.app.gitStore.sync(repoStorageKey({ uuid: '' }, { uuid: registryUuid, is_public_repository: true }), sample.url);
    }
    const repoUuid = randomUUID();
    await pg.query(
      `INSERT INTO repos (uuid, visibility_level, name, create_datetime, default_branch, is_auto_update_repo, default_commit,
                          is_only_tag_update, is_compilable_repo, last_update_datetime, creator_uuid, repository_registry_uuid)
       VALUES ($1, $2, $3, now(), $4, $5, $6, $7, false, now(), $8, $9)`,
      [repoUuid, opts.visibility ?? 'Public', opts.name, opts.defaultBranch === undefined ? 'main' : opts.defaultBranch, opts.auto ?? true, opts.defaultCommit ?? null, opts.onlyTag ?? false, opts.creator.uuid, registryUuid],
    );
    await pg.query(
      `INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_repo_uuid) VALUES (gen_random_uuid(), 'User', $1, 'Repo', $2)`,
      [opts.creator.uuid, repoUuid],
    );
    return { registryUuid, repoUuid };
  };

  const clients: mqtt.MqttClient[] = [];
  const subscribe: UnitsTestEnv['subscribe'] = async (filter) => {
    const client = mqtt.connect(broker.mqttUrl, { protocolVersion: 4, clientId: `test-sub-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
    clients.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    await client.subscribeAsync(filter, { qos: 0 });
    const messages: { topic: string; payload: string }[] = [];
    client.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString('utf8') }));
    return {
      messages,
      async waitFor(count: number, ms?: number) {
        await waitFor(() => messages.length >= count, { what: `${count} message(s) on ${filter} (got ${messages.length})`, ...(ms ? { timeoutMs: ms } : {}) });
      },
      close: () => client.endAsync(),
    };
  };

  return {
    db,
    backend,
    broker,
    root,
    sample,
    admin,
    owner,
    other,
    call,
    registerRepo,
    subscribe,
    async close() {
      for (const client of clients) await client.endAsync().catch(() => {});
      await t.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}
