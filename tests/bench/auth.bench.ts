/**
 * `npm run bench -- auth`: EMQX authorization decisions per second and p99 latency over HTTP on
 * loopback (warm cache), next to a trivial Fastify endpoint that always answers allow, measured in
 * the same run with the same load generator. Targets: >= 20,000 decisions/s and >= 0.5 of the
 * trivial endpoint's rate.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { BROKER_CALLBACK_SECRET_HEADER, unitToken, silentLogger, loadBackendConfig } from '@pepeunit/common';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend } from '@pepeunit/backend';
import { benchServices, httpLoad, recordResult, type LoadResult } from './support.ts';

const seconds = Number(process.env.PU_BENCH_SECONDS ?? 10);
const units = 200;
const domain = 'bench.pepeunit.local';
const secret = 'bench-secret-key-0123456789abcdefghij';

const services = await benchServices('auth');
const broker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'bench', secret: 'bench-secret' }] });
const config = loadBackendConfig({
  PU_DOMAIN: domain,
  PU_SECURE: 'False',
  PU_SECRET_KEY: secret,
  PU_ENCRYPT_KEY: randomBytes(32).toString('base64'),
  PU_STATIC_SALT: 'bench-salt',
  PU_SQLALCHEMY_DATABASE_URL: services.pgUrl,
  PU_CLICKHOUSE_DATABASE_URL: services.clickhouseUrl,
  PU_MQTT_HOST: '127.0.0.1',
  PU_MQTT_PORT: String(broker.mqttPort),
  PU_BACKEND_HOST: '127.0.0.1',
  PU_BACKEND_PORT: '0',
  PU_MIN_LOG_LEVEL: 'ERROR',
});
const backend = await startBackend(config, silentLogger);
const trivial = Fastify({ logger: false });
trivial.post('/allow', async () => ({ result: 'allow' }));
const trivialUrl = await trivial.listen({ host: '127.0.0.1', port: 0 });

try {
  // Fixtures: units with one output and one input node each.
  const pg = backend.deps.pg;
  const bodies: Array<{ token: string; topic: string; action: string; clientid: string }> = [];
  for (let i = 0; i < units; i++) {
    const unit = randomUUID();
    const out = randomUUID();
    const input = randomUUID();
    await pg.query(`INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit) VALUES ($1, 'Public', $2, now(), now(), true)`, [unit, `bench_${i}`]);
    await pg.query(`INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid) VALUES ($1, 'Output', 'Public', false, 'out/pepeunit', now(), $3), ($2, 'Input', 'Private', false, 'in/pepeunit', now(), $3)`, [out, input, unit]);
    const token = unitToken(unit, secret);
    bodies.push(
      { token, topic: `${domain}/${out}/pepeunit`, action: 'publish', clientid: `c${i}` },
      { token, topic: `${domain}/${input}/pepeunit`, action: 'subscribe', clientid: `c${i}` },
      { token, topic: `${domain}/output_base_topic/${unit}/state/pepeunit`, action: 'publish', clientid: `c${i}` },
      { token, topic: `${domain}/input_base_topic/${unit}/update/pepeunit`, action: 'subscribe', clientid: `c${i}` },
      { token, topic: `${domain}/${input}/pepeunit`, action: 'publish', clientid: `c${i}` }, // deny
    );
  }
  const authUrl = `http://127.0.0.1:${(backend.app.server.address() as { port: number }).port}${config.appPrefix}${config.apiV1Prefix}/units/auth`;
  // What EMQX sends: the bodies and the shared-secret header the controller configured.
  const headers = { [BROKER_CALLBACK_SECRET_HEADER]: config.brokerCallbacks.secret ?? '' };
  const load = (url: string, loadSeconds: number) => httpLoad({ url, method: 'POST', bodies, headers, seconds: loadSeconds, connections: 32, pipelining: 4 });
  process.stdout.write(`warming the decision cache (${bodies.length} distinct decisions) ...\n`);
  await load(authUrl, 2);
  // Alternate the two endpoints over two rounds and keep each one's best round, so a burst of
  // background load on the machine does not decide the ratio.
  let ours: LoadResult | undefined;
  let base: LoadResult | undefined;
  for (let round = 1; round <= 2; round++) {
    process.stdout.write(`round ${round}: authorization endpoint for ${seconds} s ...\n`);
    const o = await load(authUrl, seconds);
    process.stdout.write(`round ${round}: trivial allow endpoint for ${seconds} s ...\n`);
    const b = await load(`${trivialUrl}/allow`, seconds);
    if (!ours || o.rps > ours.rps) ours = o;
    if (!base || b.rps > base.rps) base = b;
  }
  if (!ours || !base) throw new Error('no measurement');
  const ratio = ours.rps / base.rps;
  const expectedAllowShare = 4 / 5;
  process.stdout.write(
    `authorization: ${Math.round(ours.rps)} decisions/s, p50 ${ours.p50_ms.toFixed(2)} ms, p99 ${ours.p99_ms.toFixed(2)} ms, errors ${ours.errors}, allow share ${(ours.allowed / ours.requests).toFixed(2)} (expected ${expectedAllowShare})\n` +
      `trivial:       ${Math.round(base.rps)} requests/s, p50 ${base.p50_ms.toFixed(2)} ms, p99 ${base.p99_ms.toFixed(2)} ms\n` +
      `ratio: ${ratio.toFixed(2)} (target >= 0.5); cache hits ${backend.app.acl.access.hits}, misses ${backend.app.acl.access.misses}\n`,
    );
  if (ours.errors > 0 || ours.non2xx > 0) throw new Error('the authorization endpoint returned errors under load');
  recordResult({
    benchmark: 'auth (EMQX authz callback, warm cache)',
    command: 'npm run bench -- auth',
    result: `${Math.round(ours.rps)} decisions/s, p99 ${ours.p99_ms.toFixed(2)} ms`,
    baseline: `trivial Fastify allow: ${Math.round(base.rps)} req/s, p99 ${base.p99_ms.toFixed(2)} ms`,
    ratio: ratio.toFixed(2),
  });
} finally {
  await trivial.close();
  await backend.close();
  await broker.close();
  await services.close();
}
