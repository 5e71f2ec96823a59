import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  BACKEND_VARIABLES,
  INGEST_VARIABLES,
  ConfigError,
  loadBackendConfig,
  loadIngestConfig,
  parseVariables,
} from '@pepeunit/common';

const root = resolve(import.meta.dirname, '../..');

const validBackendEnv = {
  PU_DOMAIN: 'unit.example.com',
  PU_SECRET_KEY: 'a-long-enough-jwt-signing-key-0123456789',
  PU_ENCRYPT_KEY: Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1)).toString('base64'),
  PU_STATIC_SALT: 'salt-1234',
  PU_SQLALCHEMY_DATABASE_URL: 'postgresql+psycopg2://u:p@db:5432/pepeunit',
  PU_CLICKHOUSE_DATABASE_URL: 'clickhouse+native://u:p@ch:9000/default',
  PU_MQTT_HOST: 'emqx.example.com',
};

test('reference defaults and computed links', () => {
  const c = loadBackendConfig(validBackendEnv);
  assert.equal(c.stateSendInterval, 60);
  assert.equal(c.unitLogExpiration, 86400);
  assert.equal(c.maxPaginationSize, 500);
  assert.equal(c.mqtt.port, 1883);
  assert.equal(c.mqtt.maxPayloadSizeKb, 256);
  assert.equal(c.mqtt.clientMaxBytesRate, '1MB/s');
  assert.equal(c.secure, true);
  assert.equal(c.links.linkPrefixAndV1, 'https://unit.example.com/pepeunit/api/v1');
  assert.equal(c.emqx.apiUrl, 'https://emqx.example.com');
  assert.equal(c.featureFlags.datapipeDefaultLastValue, true);
  assert.equal(c.logLevel, 'info');
});

test('Python-style booleans and overrides are understood', () => {
  const c = loadBackendConfig({ ...validBackendEnv, PU_SECURE: 'False', PU_MQTT_SECURE: 'false', PU_MQTT_API_PORT: '18084', PU_MIN_LOG_LEVEL: 'warning' });
  assert.equal(c.secure, false);
  assert.equal(c.links.link, 'http://unit.example.com');
  assert.equal(c.emqx.apiUrl, 'http://emqx.example.com:18084');
  assert.equal(c.logLevel, 'warn');
});

test('every bad variable is named at once, secrets are not echoed', () => {
  const env = { ...validBackendEnv, PU_DOMAIN: undefined, PU_STATE_SEND_INTERVAL: 'abc', PU_SECURE: 'maybe', PU_MQTT_MAX_QOS: '3', PU_ENCRYPT_KEY: undefined };
  assert.throws(
    () => loadBackendConfig(env),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const names = err.problems.map((p) => p.split(/[ =]/)[0]);
      assert.deepEqual(names.sort(), ['PU_DOMAIN', 'PU_ENCRYPT_KEY', 'PU_MQTT_MAX_QOS', 'PU_SECURE', 'PU_STATE_SEND_INTERVAL']);
      assert.match(err.message, /PU_STATE_SEND_INTERVAL="abc" is invalid; expected an integer/);
      assert.match(err.message, /PU_DOMAIN is not set/);
      return true;
    },
  );
  assert.throws(() => parseVariables(BACKEND_VARIABLES, { ...validBackendEnv, PU_SECRET_KEY: '' }, 'x'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /PU_SECRET_KEY is not set/);
    return true;
  });
});

test('a malformed database URL is refused without echoing its password', () => {
  for (const url of ['default:s3cret-pw@127.0.0.1:8123/pepeunit', 'http://default:s3cret-pw@/pepeunit']) {
    assert.throws(
      () => loadBackendConfig({ ...validBackendEnv, PU_CLICKHOUSE_DATABASE_URL: url }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /PU_CLICKHOUSE_DATABASE_URL=".*\*\*\*@.*" is invalid/);
        assert.ok(!err.message.includes('s3cret-pw'), err.message);
        return true;
      },
    );
  }
});

test('a malformed AES key is refused with what is expected', () => {
  assert.throws(() => loadBackendConfig({ ...validBackendEnv, PU_ENCRYPT_KEY: 'c2hvcnQ=' }), /PU_ENCRYPT_KEY is invalid; expected base64 of exactly 32 bytes/);
});

test('the ingest reads only PU_DP_* variables with the Go defaults', () => {
  const c = loadIngestConfig({
    PU_DP_DOMAIN: 'd',
    PU_DP_SECRET_KEY: 'a-long-enough-jwt-signing-key-0123456789',
    PU_DP_SQLALCHEMY_DATABASE_URL: 'postgresql://u@h/db',
    PU_DP_CLICKHOUSE_DATABASE_URL: 'http://h:8123/db',
    PU_DP_MQTT_HOST: 'h',
  });
  assert.equal(c.configSyncIntervalSeconds, 60);
  assert.equal(c.bufferFlushIntervalSeconds, 5);
  assert.equal(c.bufferMaxSize, 1000);
  assert.equal(c.nRecordsCleanupIntervalSeconds, 60);
  assert.equal(c.mqttPort, 1883);
  assert.throws(() => loadIngestConfig({}), (err: unknown) => err instanceof ConfigError && err.problems.length === 5);
});

test('the backend process exits non-zero naming PU_DOMAIN and PU_STATE_SEND_INTERVAL', () => {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...validBackendEnv, PU_STATE_SEND_INTERVAL: 'abc' };
  delete env.PU_DOMAIN;
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'backend/src/server.ts')], { env, cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(result.status, 0);
  assert.match(result.stderr, /PU_DOMAIN is not set/);
  assert.match(result.stderr, /PU_STATE_SEND_INTERVAL="abc" is invalid/);
});

test('the ingest process exits non-zero naming its missing PU_DP_ variables', () => {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, PU_DP_BUFFER_MAX_SIZE: 'lots' };
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'ingest-go-compatible/src/main.ts')], { env, cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(result.status, 0);
  for (const name of ['PU_DP_DOMAIN', 'PU_DP_SECRET_KEY', 'PU_DP_MQTT_HOST', 'PU_DP_BUFFER_MAX_SIZE']) assert.match(result.stderr, new RegExp(name));
});

test('docs/OPERATIONS.md documents every variable', () => {
  const doc = readFileSync(join(root, 'docs/OPERATIONS.md'), 'utf8');
  for (const spec of [...BACKEND_VARIABLES, ...INGEST_VARIABLES]) {
    assert.ok(doc.includes(`\`${spec.name}\``), `${spec.name} is missing from docs/OPERATIONS.md`);
  }
});

test('weak secrets are refused at start with one clear message each (issue 10.12)', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PU_SECRET_KEY: 'k' }, /PU_SECRET_KEY is too weak: 1 characters, at least 32 required/],
    [{ PU_SECRET_KEY: 'a'.repeat(64) }, /PU_SECRET_KEY is too weak: fewer than 10 different characters/],
    [{ PU_ENCRYPT_KEY: Buffer.alloc(32, 0).toString('base64') }, /PU_ENCRYPT_KEY is too weak/],
    [{ PU_ENCRYPT_KEY: Buffer.alloc(32, 7).toString('base64') }, /PU_ENCRYPT_KEY is too weak/],
    [{ PU_STATIC_SALT: 'abc' }, /PU_STATIC_SALT is too short/],
  ];
  for (const [override, message] of cases) {
    assert.throws(() => loadBackendConfig({ ...validBackendEnv, ...override }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, message);
      return true;
    });
  }
  assert.throws(
    () => loadIngestConfig({ PU_DP_DOMAIN: 'd', PU_DP_SECRET_KEY: 'short', PU_DP_SQLALCHEMY_DATABASE_URL: 'postgresql://u@h/db', PU_DP_CLICKHOUSE_DATABASE_URL: 'http://h:8123/db', PU_DP_MQTT_HOST: 'h' }),
    /PU_DP_SECRET_KEY is too weak/,
  );
});
