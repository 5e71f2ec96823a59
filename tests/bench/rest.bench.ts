/**
 * `npm run bench -- rest [--seconds 10] [--connections 50] [--units 10000] [--rows 10000000] [--deep 9000000] [--only C,D] [--no-record]`:
 * the REST path of the real backend (`startBackend`, listening on loopback, Postgres and an
 * embedded ClickHouse in its own process) against bare Fastify, in one run (issue 11):
 *
 *   A  bare Fastify answering GET /pepeunit with the same JSON body (the baseline)
 *   B  GET /pepeunit                                   target >= 0.7 x A
 *   C  GET /users/{uuid} with a token                  target >= 6,000 req/s and p99 < 20 ms
 *   D  GET /units/?limit=10 with a token, 10,000 units target >= 3,000 req/s
 *   E  DataPipe read, 500 rows, first page             target p95 < 50 ms
 *   F  the same at a deep keyset cursor (row 9 M of 10 M; the `next_cursor` the API returns)
 *   G  the same at a deep `offset` (what the reference used)
 *   E0, F0, G0  E, F, G on a second backend without the DataPipe page cache
 *       (PU_DATAPIPE_READ_CACHE_MS=0): the cost of a page no other request asked for just before
 *
 * The DataPipe node has a TimeWindow (24 h) config; its 10 M rows are written by ClickHouse
 * itself (`INSERT ... SELECT FROM numbers(...)`) and merged before measuring. autocannon runs in
 * its own process (tests/bench/http-load.ts). Every case is measured on one connection (the
 * latency of a request that queues behind no other) and at `--connections`: for `--seconds`
 * after a warm-up, or, for an endpoint too slow for that window, over a fixed number of
 * requests with every answer awaited (a window would cut off the slowest answers, those the
 * percentiles are about). A and B alternate over two rounds and keep their best, since their
 * ratio is a target. Every request must answer 2xx, or the benchmark fails. Results go to
 * docs/BENCHMARKS.md, one row per case, bare Fastify of the same run as the baseline.
 * Knobs also as environment variables: PU_BENCH_SECONDS, PU_BENCH_CONNECTIONS. `--only` measures
 * some cases (A is always measured: it is the baseline; without E/F/G nothing is seeded in
 * ClickHouse); `--no-record` leaves docs/BENCHMARKS.md alone (profiling, trials).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { loadBackendConfig, silentLogger } from '@pepeunit/common';
import { normaliseDataPipeConfig, parseDataPipeYaml, serialiseDataPipeConfig } from '@pepeunit/common/datapipe';
import { createClickHouse } from '@pepeunit/clickhouse-schemas';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend } from '@pepeunit/backend';
import { benchServices, httpLoad, recordResult, type LoadResult } from './support.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: process.env.PU_BENCH_SECONDS ?? '10' },
    connections: { type: 'string', default: process.env.PU_BENCH_CONNECTIONS ?? '50' },
    units: { type: 'string', default: '10000' },
    rows: { type: 'string', default: '10000000' },
    deep: { type: 'string' },
    only: { type: 'string' },
    'no-record': { type: 'boolean', default: false },
  },
});
const only = args.only === undefined ? null : new Set(['A', ...args.only.toUpperCase().split(',').map((id) => id.trim())]);
const wanted = (id: string): boolean => only === null || only.has(id);
const seedPipe = ['E', 'F', 'G', 'E0', 'F0', 'G0'].some(wanted);
const seconds = Number(args.seconds);
const connections = Number(args.connections);
const unitCount = Number(args.units);
const rowCount = Number(args.rows);
const pageSize = 500;
/** Rows before the deep page: 90 % into the table unless given. */
const deepRow = args.deep !== undefined ? Number(args.deep) : Math.floor(rowCount * 0.9);
const warmupSeconds = 2;
const unloadedSeconds = 3;
for (const [name, value] of Object.entries({ seconds, connections, unitCount, rowCount, deepRow })) {
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${String(value)}`);
}
if (deepRow + pageSize > rowCount) throw new Error(`--deep ${deepRow} leaves no page of ${pageSize} in ${rowCount} rows`);

const domain = 'bench.pepeunit.local';
const api = '/pepeunit/api/v1';
const log = (line: string): void => void process.stdout.write(`${line}\n`);
const started = Date.now();

const services = await benchServices('rest', { clickhouseProcess: true });
const broker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'bench', secret: 'bench-secret' }] });
const config = loadBackendConfig({
  PU_DOMAIN: domain,
  PU_SECURE: 'False',
  PU_SECRET_KEY: 'bench-secret-key-0123456789abcdef',
  PU_ENCRYPT_KEY: randomBytes(32).toString('base64'),
  PU_STATIC_SALT: 'bench-salt',
  PU_SQLALCHEMY_DATABASE_URL: services.pgUrl,
  PU_CLICKHOUSE_DATABASE_URL: services.clickhouseUrl,
  PU_MQTT_HOST: '127.0.0.1',
  PU_MQTT_PORT: String(broker.mqttPort),
  PU_BACKEND_HOST: '127.0.0.1',
  PU_BACKEND_PORT: '0',
  PU_MAX_PAGINATION_SIZE: String(pageSize),
  PU_FF_TELEGRAM_BOT_ENABLE: 'False',
  PU_FF_GRAFANA_INTEGRATION_ENABLE: 'False',
  PU_MIN_LOG_LEVEL: 'ERROR',
});
const backend = await startBackend(config, silentLogger);
const origin = `http://127.0.0.1:${(backend.app.server.address() as { port: number }).port}`;
// The same database served without the DataPipe page cache: what a read costs when every
// request is a different page (identical reads in flight are still shared).
const uncached = await startBackend({ ...config, datapipeReadCacheMs: 0 }, silentLogger);
const uncachedOrigin = `http://127.0.0.1:${(uncached.app.server.address() as { port: number }).port}`;
const bare = Fastify({ logger: false });
// The clickhouse client of the seeding may wait minutes for the 10 M-row insert and its merge.
const clickhouse = createClickHouse(services.clickhouseUrl.replace(/\/[^/]*$/, ''), services.clickhouseUrl.split('/').at(-1)!, { requestTimeoutMs: 15 * 60_000 });

async function call<T>(method: 'GET' | 'POST', path: string, options: { token?: string; body?: unknown } = {}): Promise<T> {
  const response = await fetch(`${origin}${path}`, {
    method,
    headers: { ...(options.token ? { 'x-auth-token': options.token } : {}), ...(options.body ? { 'content-type': 'application/json' } : {}) },
    ...(options.body ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

interface Case {
  readonly id: string;
  readonly label: string;
  readonly url: string;
  readonly token?: string;
  readonly target: string;
  readonly met: (result: LoadResult, baseline: LoadResult) => boolean;
}

interface Measured {
  readonly spec: Case;
  /** At `connections` concurrent connections. */
  readonly loaded: LoadResult;
  /** At one connection: the latency of a request that queues behind no other. */
  readonly single: LoadResult;
  /** Measured over a fixed number of requests, every answer awaited (slow endpoints). */
  readonly counted: boolean;
}

try {
  // --- Fixtures: one user with 10,000 units (SQL), one TimeWindow node with 10 M rows (ClickHouse).
  const login = 'bench_owner';
  const password = 'Passw0rd!bench';
  await call('POST', `${api}/users`, { body: { login, password } });
  const { token } = await call<{ token: string }>('POST', `${api}/users/auth`, { body: { credentials: login, password } });
  const pg = backend.deps.pg;
  const userUuid = (await pg.query<{ uuid: string }>('SELECT uuid::text AS uuid FROM users WHERE login = $1', [login])).rows[0]!.uuid;
  await pg.query(
    `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid)
     SELECT gen_random_uuid(), 'Private', 'bench_unit_' || g, now() - make_interval(secs => g), now(), true, $1
       FROM generate_series(1, $2::int) AS g`,
    [userUuid, unitCount],
  );
  // What creating a unit through the API grants: its creator and the unit itself may see it.
  await pg.query(
    `INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_unit_uuid)
       SELECT gen_random_uuid(), 'User', $1, 'Unit', uuid FROM units WHERE creator_uuid = $1`,
    [userUuid],
  );
  await pg.query(
    `INSERT INTO permissions (uuid, agent_type, agent_unit_uuid, resource_type, resource_unit_uuid)
       SELECT gen_random_uuid(), 'Unit', uuid, 'Unit', uuid FROM units WHERE creator_uuid = $1`,
    [userUuid],
  );
  const pipeUnit = (await pg.query<{ uuid: string }>(`SELECT uuid::text AS uuid FROM units WHERE name = 'bench_unit_1'`)).rows[0]!.uuid;
  const node = randomUUID();
  const yaml = 'active_period: {type: Permanent}\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: TimeWindow, time_window_size: 86400}\n';
  const parsed = parseDataPipeYaml(yaml);
  if (!parsed.ok) throw new Error('the bench DataPipe config does not parse');
  await pg.query(
    `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid, is_data_pipe_active, data_pipe_yml)
     VALUES ($1, 'Output', 'Private', false, 'temperature/pepeunit', now(), $2, $3, true, $4)`,
    [node, pipeUnit, userUuid, serialiseDataPipeConfig(normaliseDataPipeConfig(parsed.document))],
  );
  await pg.query(
    `INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'User', $1, 'UnitNode', $2)`,
    [userUuid, node],
  );
  await pg.query('ANALYZE units; ANALYZE units_nodes; ANALYZE users; ANALYZE permissions');

  // Rows every 5 ms up to now (10 M rows span 13.9 h), each kept 24 h: all visible while we measure.
  log(`seeding ${unitCount} units${seedPipe ? ` and ${rowCount} TimeWindow rows` : ''} ...`);
  const insertStarted = Date.now();
  if (seedPipe) await clickhouse.command({
    query: `INSERT INTO window_entry (unit_node_uuid, state, state_type, create_datetime, expiration_datetime, size)
            SELECT {node:UUID}, toString(round(20 + 5 * sin(number / 1000), 2)) AS value, 'Number',
                   fromUnixTimestamp64Milli(toInt64({now:Int64} - ({rows:UInt64} - number) * 5)),
                   toDateTime(intDiv({now:Int64} - ({rows:UInt64} - number) * 5, 1000) + 86400),
                   length(value)
              FROM numbers({rows:UInt64})`,
    query_params: { node, now: Date.now(), rows: rowCount },
  });
  if (seedPipe) await clickhouse.command({ query: 'OPTIMIZE TABLE window_entry FINAL' });
  log(`  inserted and merged in ${((Date.now() - insertStarted) / 1000).toFixed(1)} s`);

  // --- Cases, each checked once for a correct answer before it is measured.
  const rootBody = await call<unknown>('GET', '/pepeunit');
  bare.get('/pepeunit', async () => rootBody);
  const bareUrl = `${await bare.listen({ host: '127.0.0.1', port: 0 })}/pepeunit`;

  const user = await call<{ uuid: string }>('GET', `${api}/users/${userUuid}`, { token });
  if (user.uuid !== userUuid) throw new Error('GET /users/{uuid} returned another user');
  const units = await call<{ count: number; units: unknown[] }>('GET', `${api}/units/?limit=10`, { token });
  if (units.count !== unitCount || units.units.length !== 10) throw new Error(`GET /units/?limit=10: count ${units.count}, ${units.units.length} units`);

  const pipeQuery = `${api}/unit_nodes/get_data_pipe_data/?uuid=${node}&type=TimeWindow&limit=${pageSize}`;
  type Page = { count: number; pipe_data: { state: string; create_datetime: string }[]; next_cursor: string | null };
  let deepCursor = '';
  if (seedPipe) {
    const first = await call<Page>('GET', pipeQuery, { token });
    if (first.count !== rowCount || first.pipe_data.length !== pageSize || !first.next_cursor) throw new Error(`first DataPipe page: count ${first.count}, ${first.pipe_data.length} rows`);
    // The keyset cursor after `deepRow` rows, as the API hands it out: the next_cursor of the
    // offset page that ends there (walking 18,000 pages to reach it would say nothing more).
    const beforeDeep = await call<Page>('GET', `${pipeQuery}&offset=${deepRow - pageSize}`, { token });
    if (!beforeDeep.next_cursor) throw new Error('no next_cursor at the deep position');
    deepCursor = beforeDeep.next_cursor;
    const deepByCursor = await call<Page>('GET', `${pipeQuery}&cursor=${deepCursor}`, { token });
    const deepByOffset = await call<Page>('GET', `${pipeQuery}&offset=${deepRow}`, { token });
    if (deepByCursor.pipe_data.length !== pageSize || JSON.stringify(deepByCursor.pipe_data) !== JSON.stringify(deepByOffset.pipe_data)) {
      throw new Error('the deep page by cursor differs from the deep page by offset');
    }
  }

  const cases: Case[] = [
    { id: 'A', label: 'bare Fastify GET /pepeunit (same body)', url: bareUrl, target: 'baseline', met: () => true },
    { id: 'B', label: 'GET /pepeunit', url: `${origin}/pepeunit`, target: '>= 0.7 x bare', met: (r, b) => r.rps >= 0.7 * b.rps },
    { id: 'C', label: 'GET /users/{uuid} with a token', url: `${origin}${api}/users/${userUuid}`, token, target: '>= 6,000 req/s, p99 < 20 ms', met: (r) => r.rps >= 6000 && r.p99_ms < 20 },
    { id: 'D', label: `GET /units/?limit=10 with a token (${unitCount.toLocaleString('en-US')} units)`, url: `${origin}${api}/units/?limit=10`, token, target: '>= 3,000 req/s', met: (r) => r.rps >= 3000 },
    { id: 'E', label: `DataPipe TimeWindow page of ${pageSize} rows, first page (${rowCount.toLocaleString('en-US')} rows)`, url: `${origin}${pipeQuery}`, token, target: 'p95 < 50 ms', met: (r) => r.p95_ms < 50 },
    { id: 'F', label: `DataPipe page of ${pageSize} rows at keyset cursor after row ${deepRow.toLocaleString('en-US')}`, url: `${origin}${pipeQuery}&cursor=${deepCursor}`, token, target: 'p95 < 50 ms', met: (r) => r.p95_ms < 50 },
    { id: 'G', label: `DataPipe page of ${pageSize} rows at offset=${deepRow}`, url: `${origin}${pipeQuery}&offset=${deepRow}`, token, target: 'p95 < 50 ms (reference style)', met: (r) => r.p95_ms < 50 },
    { id: 'E0', label: 'E without the page cache (PU_DATAPIPE_READ_CACHE_MS=0)', url: `${uncachedOrigin}${pipeQuery}`, token, target: 'informational', met: () => true },
    { id: 'F0', label: 'F without the page cache', url: `${uncachedOrigin}${pipeQuery}&cursor=${deepCursor}`, token, target: 'informational', met: () => true },
    { id: 'G0', label: 'G without the page cache', url: `${uncachedOrigin}${pipeQuery}&offset=${deepRow}`, token, target: 'informational', met: () => true },
  ];

  const selected = cases.filter((c) => wanted(c.id));
  const measured: Measured[] = [];
  const check = (spec: Case, result: LoadResult): LoadResult => {
    if (result.errors > 0 || result.non2xx > 0 || result.requests === 0) {
      throw new Error(`${spec.id} ${spec.label}: ${result.errors} errors, ${result.non2xx} non-2xx answers, ${result.requests} 2xx`);
    }
    return result;
  };
  const headersOf = (spec: Case): Record<string, string> => (spec.token ? { 'x-auth-token': spec.token } : {});
  // Requests the load generator abandoned at its deadline may still be queued in the server:
  // one answered request afterwards means the next run starts on an idle server.
  const drain = async (spec: Case): Promise<void> => void (await (await fetch(spec.url, { headers: headersOf(spec) })).text());
  const run = async (spec: Case, how: { seconds: number; amount?: number; connections: number }): Promise<LoadResult> => {
    const result = check(spec, await httpLoad({ url: spec.url, headers: headersOf(spec), pipelining: 1, timeoutSeconds: 600, ...how }));
    await drain(spec);
    return result;
  };

  /**
   * One case: five requests on one connection to learn its latency, then about
   * `unloadedSeconds` of requests on one connection. Under load a fast endpoint runs for
   * `seconds` after a warm-up; a slow one (its answers would take more than a twentieth of the
   * window at `connections` concurrent requests) sends a fixed number of requests sized to
   * about `seconds` of work and awaits every answer: with a fixed window the slowest answers,
   * those the percentiles are about, would be cut off.
   */
  const measure = async (spec: Case): Promise<Measured> => {
    log(`${spec.id}: ${spec.label}`);
    const probe = await run(spec, { seconds, amount: 5, connections: 1 });
    // The median: the first answers on a fresh connection can be slow (JIT, pool warm-up).
    const latency = probe.p50_ms / 1000;
    const single = await run(spec, { seconds, amount: Math.max(5, Math.round(unloadedSeconds / latency)), connections: 1 });
    log(`    1 connection: ${single.requests} requests, p50 ${single.p50_ms.toFixed(2)} ms`);
    if (connections * latency <= seconds / 20) {
      log(`    warm-up ${warmupSeconds} s, then ${seconds} s at ${connections} connections ...`);
      await run(spec, { seconds: warmupSeconds, connections });
      return { spec, single, loaded: await run(spec, { seconds, connections }), counted: false };
    }
    const amount = connections * Math.max(1, Math.round(seconds / (connections * latency)));
    log(`    ${amount} requests at ${connections} connections, every answer awaited ...`);
    return { spec, single, loaded: await run(spec, { seconds, amount, connections }), counted: true };
  };

  // The ratio B / A is a target: A and B alternate over two rounds and each keeps its best, so a
  // burst of background load on the machine does not decide it.
  const best = (a: Measured, b: Measured): Measured => (b.loaded.rps > a.loaded.rps ? b : a);
  const bareFirst = await measure(cases[0]!);
  if (wanted('B')) {
    const rootFirst = await measure(cases[1]!);
    measured.push(best(bareFirst, await measure(cases[0]!)), best(rootFirst, await measure(cases[1]!)));
  } else measured.push(bareFirst);
  for (const spec of selected.filter((c) => c.id !== 'A' && c.id !== 'B')) measured.push(await measure(spec));

  // --- Report.
  const baseline = measured[0]!.loaded;
  const ms = (value: number): string => value.toFixed(value < 10 ? 2 : 1);
  const describe = (r: LoadResult): string => `${Math.round(r.rps)} req/s, p50 ${ms(r.p50_ms)} ms, p95 ${ms(r.p95_ms)} ms, p99 ${ms(r.p99_ms)} ms`;
  const how = (m: Measured): string => (m.counted ? `${m.loaded.requests} requests at ${connections} connections, every answer awaited` : `${connections} connections, ${seconds} s`);
  log('');
  for (const m of measured) {
    const verdict = m.spec.id === 'A' ? '' : `  [target ${m.spec.target}: ${m.spec.met(m.loaded, baseline) ? 'met' : 'MISSED'}]`;
    log(`${m.spec.id} ${m.spec.label}\n    ${how(m)}: ${describe(m.loaded)}; ${(m.loaded.rps / baseline.rps).toFixed(2)} x bare${verdict}\n    1 connection: ${describe(m.single)}`);
  }
  const bareText = `bare Fastify GET /pepeunit (best of 2 rounds alternating with B): ${describe(baseline)}`;
  for (const m of args['no-record'] ? [] : measured.slice(1)) {
    recordResult({
      benchmark: `rest ${m.spec.id}: ${m.spec.label}; ${how(m)}${m.spec.id === 'B' ? ', best of 2 rounds' : ''}`,
      command: 'npm run bench -- rest',
      result: `${describe(m.loaded)}; 1 connection: p50 ${ms(m.single.p50_ms)} ms, p95 ${ms(m.single.p95_ms)} ms; target ${m.spec.target}: ${m.spec.met(m.loaded, baseline) ? 'met' : 'missed'}`,
      baseline: bareText,
      ratio: (m.loaded.rps / baseline.rps).toFixed(2),
    });
  }
  log(`\nrecorded ${args['no-record'] ? 0 : measured.length - 1} rows in docs/BENCHMARKS.md; total ${((Date.now() - started) / 1000).toFixed(0)} s`);
} finally {
  await bare.close();
  await clickhouse.close();
  await uncached.close();
  await backend.close();
  await broker.close();
  await services.close();
}
